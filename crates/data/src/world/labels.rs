//! Labelled scenes drawn apart from the world, and their supervised
//! targets: what warms an image encoder up before pretraining.

use super::*;

/// `count` labelled scenes drawn apart from the world of `config`: the
/// same generator (objects, sizes, placement, background) on its own RNG
/// stream, so none is a scene of the world, whatever its split. A
/// supervised image corpus for warming an image encoder up, as ImageNet
/// is for DeiT (`split` is `labelled`; nothing is written to disk, render
/// them with [`render_scene`]).
pub fn labelled_scenes(config: &WorldConfig, count: usize) -> Vec<Scene> {
    (0..count)
        .map(|i| {
            let id = config.images + i;
            let mut rng = scene_rng(config.seed, id as u64, 8);
            let objects = place_objects(&mut rng, config.image_size as f32);
            Scene {
                id,
                image: String::new(),
                split: "labelled".into(),
                objects,
                background_seed: rng.random(),
            }
        })
        .collect()
}

/// Most objects in a scene.
pub const MAX_OBJECTS: usize = 4;

/// Length of [`attribute_labels`].
pub const ATTRIBUTE_LABELS: usize = Shape::ALL.len() * Colour::ALL.len()
    + Shape::ALL.len() * 2
    + Colour::ALL.len() * 9
    + MAX_OBJECTS;

/// A scene's attributes as multi-hot targets for a supervised image
/// encoder: which (shape, colour), (shape, size) and (colour, grid region)
/// combinations occur, then the object count one-hot. Combinations rather
/// than single attributes, so the labels say which colour goes with which
/// shape, as the captions do.
pub fn attribute_labels(scene: &Scene) -> Vec<f32> {
    let (shapes, colours) = (Shape::ALL.len(), Colour::ALL.len());
    let mut labels = vec![0.0; ATTRIBUTE_LABELS];
    for object in &scene.objects {
        let shape = Shape::ALL.iter().position(|s| *s == object.shape);
        let colour = Colour::ALL.iter().position(|c| *c == object.colour);
        let (shape, colour) = (shape.expect("listed"), colour.expect("listed"));
        let size = usize::from(object.size == Size::Large);
        let region = 3 * object.region.row as usize + object.region.column as usize;
        labels[shape * colours + colour] = 1.0;
        labels[shapes * colours + shape * 2 + size] = 1.0;
        labels[shapes * colours + shapes * 2 + colour * 9 + region] = 1.0;
    }
    let count = scene.objects.len().clamp(1, MAX_OBJECTS);
    labels[ATTRIBUTE_LABELS - MAX_OBJECTS + count - 1] = 1.0;
    labels
}

/// Length of one patch's row of [`patch_labels`].
pub const PATCH_LABELS: usize = Shape::ALL.len() * Colour::ALL.len() + Shape::ALL.len() * 2;

/// Dense targets for the patches of a `side`-pixel image of `scene` cut
/// into `patch`-pixel squares, row-major, [`PATCH_LABELS`] per patch: the
/// (shape, colour) and (shape, size) combinations of the objects whose
/// box covers a fifth of the patch or of itself; a background patch is all
/// zeros. The token labelling of Jiang et al. 2021 ("All Tokens Matter"),
/// with the ground truth in place of their annotator's score maps.
pub fn patch_labels(scene: &Scene, side: u32, patch: u32) -> Vec<f32> {
    let (colours, grid) = (Colour::ALL.len(), (side / patch) as usize);
    let mut labels = vec![0.0; grid * grid * PATCH_LABELS];
    let p = patch as f32;
    for object in &scene.objects {
        let shape = Shape::ALL.iter().position(|s| *s == object.shape);
        let colour = Colour::ALL.iter().position(|c| *c == object.colour);
        let (shape, colour) = (shape.expect("listed"), colour.expect("listed"));
        let size = usize::from(object.size == Size::Large);
        let [x, y, w, h] = object.bbox;
        let enough = 0.2 * (w * h).min(p * p);
        for row in 0..grid {
            for column in 0..grid {
                let (px, py) = (column as f32 * p, row as f32 * p);
                let overlap_x = (x + w).min(px + p) - x.max(px);
                let overlap_y = (y + h).min(py + p) - y.max(py);
                if overlap_x > 0.0 && overlap_y > 0.0 && overlap_x * overlap_y >= enough {
                    let at = (row * grid + column) * PATCH_LABELS;
                    labels[at + shape * colours + colour] = 1.0;
                    labels[at + Shape::ALL.len() * colours + shape * 2 + size] = 1.0;
                }
            }
        }
    }
    labels
}
