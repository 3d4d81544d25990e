//! What the warm-up learns from: labelled images (the synthetic world's,
//! or drawn apart from it by its generator) and their batches, epoch by
//! epoch, transformed as the step at which they are used dictates.

use std::path::Path;

use image::RgbImage;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use vl_data::ImageBatch;
use vl_data::loader::load_rgb;
use vl_data::mix_seed;
use vl_data::transforms::{AugmentConfig, eval_transform, train_transform};
use vl_data::world::{
    Scene, attribute_labels, labelled_scenes, patch_labels, read_world, render_scene,
};

use super::VisionWarmupConfig;
use crate::TrainError;
use crate::runner::Batches;

/// Images with multi-hot labels.
#[derive(Debug, Clone, Default)]
pub struct LabelledImages {
    /// Decoded images.
    pub images: Vec<RgbImage>,
    /// One multi-hot row per image, all of one length.
    pub labels: Vec<Vec<f32>>,
    /// Per image, the patches' multi-hot rows back to back
    /// ([`vl_data::world::patch_labels`]), or empty.
    pub patch_labels: Vec<Vec<f32>>,
}

impl LabelledImages {
    /// The images of `scenes` (read from the world directory `dir`),
    /// labelled by [`vl_data::world::attribute_labels`].
    pub fn from_scenes<'a>(
        dir: &Path,
        scenes: impl IntoIterator<Item = &'a Scene>,
    ) -> Result<Self, TrainError> {
        let scenes: Vec<&Scene> = scenes.into_iter().collect();
        let images = scenes
            .par_iter()
            .map(|scene| load_rgb(&dir.join(&scene.image)))
            .collect::<Result<_, _>>()?;
        let labels = scenes.iter().map(|scene| attribute_labels(scene)).collect();
        Ok(Self {
            images,
            labels,
            patch_labels: Vec::new(),
        })
    }

    /// `scenes` rendered in memory at `side` pixels (on every core), with
    /// their labels, and their patch labels when `patch` is given.
    pub fn rendered(scenes: &[Scene], side: u32, patch: Option<u32>) -> Self {
        Self {
            images: scenes
                .par_iter()
                .map(|scene| render_scene(scene, side))
                .collect(),
            labels: scenes.iter().map(attribute_labels).collect(),
            patch_labels: Vec::new(),
        }
        .with_patch_labels(scenes, side, patch)
    }

    /// With the patch labels of `scenes` (these images', in order, at
    /// `side` pixels) for `patch`-pixel patches, when `patch` is given.
    pub fn with_patch_labels<'a>(
        mut self,
        scenes: impl IntoIterator<Item = &'a Scene>,
        side: u32,
        patch: Option<u32>,
    ) -> Self {
        if let Some(patch) = patch {
            self.patch_labels = scenes
                .into_iter()
                .map(|scene| patch_labels(scene, side, patch))
                .collect();
        }
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.images.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// Labels per image.
    pub fn label_count(&self) -> usize {
        self.labels.first().map_or(0, Vec::len)
    }
}

/// What a warm-up trains on, and the images that only score it.
#[derive(Debug, Clone, Default)]
pub struct WarmupData {
    /// Training images.
    pub train: LabelledImages,
    /// Held-out images, scored after training when not empty.
    pub held_out: LabelledImages,
}

impl WarmupData {
    /// What `config` trains on for the synthetic world in `dir`:
    /// `config.images` labelled images drawn apart from it, or its training
    /// split when that is 0; held out by its validation split. With
    /// `config.token_labels`, the training images carry patch labels for
    /// `patch_size`-pixel patches.
    pub fn from_world(
        dir: &Path,
        config: &VisionWarmupConfig,
        patch_size: u32,
    ) -> Result<Self, TrainError> {
        let world = read_world(dir)?;
        let split =
            |name: &'static str| world.scenes.iter().filter(move |scene| scene.split == name);
        let (side, patch) = (
            world.config.image_size,
            (config.token_labels > 0.0).then_some(patch_size),
        );
        let train = if config.images > 0 {
            LabelledImages::rendered(&labelled_scenes(&world.config, config.images), side, patch)
        } else {
            LabelledImages::from_scenes(dir, split("train"))?.with_patch_labels(
                split("train"),
                side,
                patch,
            )
        };
        Ok(Self {
            train,
            held_out: LabelledImages::from_scenes(dir, split("val"))?,
        })
    }
}

/// One step's images, transformed, with their targets.
#[derive(Debug, Clone)]
pub struct LabelledBatch {
    /// Normalised pixels.
    pub images: ImageBatch,
    /// Multi-hot rows, `[images, labels]` row-major.
    pub labels: Vec<f32>,
    /// Labels per image.
    pub label_count: usize,
    /// The patches' multi-hot rows, image after image, when token
    /// labelling is on; else empty.
    pub patch_labels: Vec<f32>,
}

/// The training images in batches: each epoch a fresh shuffle, each image
/// randomly cropped as its step and place in the batch seed (not cropped
/// with token labelling, whose labels need the patch grid in place).
pub struct WarmupBatches<'a> {
    pub(crate) train: &'a LabelledImages,
    pub(crate) batch_size: usize,
    pub(crate) image_size: u32,
    pub(crate) augment: &'a AugmentConfig,
    pub(crate) token_labels: bool,
    pub(crate) seed: u64,
}

impl WarmupBatches<'_> {
    fn assemble(&self, step: usize, rows: &[usize]) -> LabelledBatch {
        let train = self.train;
        let images: Vec<RgbImage> = rows
            .par_iter()
            .enumerate()
            .map(|(place, &row)| match self.token_labels {
                true => eval_transform(&train.images[row], self.image_size),
                false => {
                    let purpose = 2 + place as u64;
                    let mut rng = StdRng::seed_from_u64(mix_seed(self.seed, step as u64, purpose));
                    train_transform(&train.images[row], self.image_size, self.augment, &mut rng)
                }
            })
            .collect();
        LabelledBatch {
            images: ImageBatch::from_images(&images, self.image_size as usize),
            labels: rows
                .iter()
                .flat_map(|&row| train.labels[row].clone())
                .collect(),
            label_count: train.label_count(),
            patch_labels: match self.token_labels {
                true => rows
                    .iter()
                    .flat_map(|&row| train.patch_labels[row].clone())
                    .collect(),
                false => Vec::new(),
            },
        }
    }
}

impl Batches for WarmupBatches<'_> {
    type Batch = LabelledBatch;

    fn steps_per_epoch(&self) -> usize {
        self.train.len() / self.batch_size
    }

    fn batch_len(batch: &Self::Batch) -> usize {
        batch.images.len()
    }

    fn epoch(
        &self,
        epoch: usize,
        start_step: usize,
    ) -> impl Iterator<Item = Result<Self::Batch, TrainError>> {
        // Each epoch shuffles the order of the one before, so a resumed
        // epoch replays the shuffles of all before it.
        let mut order: Vec<usize> = (0..self.train.len()).collect();
        for e in 0..=epoch {
            order.shuffle(&mut StdRng::seed_from_u64(mix_seed(self.seed, e as u64, 1)));
        }
        let first = epoch * self.steps_per_epoch();
        (start_step..self.steps_per_epoch()).map(move |i| {
            let rows = &order[i * self.batch_size..(i + 1) * self.batch_size];
            Ok(self.assemble(first + i, rows))
        })
    }
}
