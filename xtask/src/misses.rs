//! `cargo xtask retrieval-misses --run DIR`: the top-1 misses of a
//! retrieval evaluation on a synthetic world, sorted by how the retrieved
//! image differs from the right one ([`vl_data::world::difference`]) and by
//! how many objects the right image holds. Reads `rankings.json`, which
//! `train-albef` writes beside `eval_retrieval.json`, and the world's
//! `world.json`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use vl_data::world::{Difference, MAX_OBJECTS, Scene, Shape, Size, difference, read_world};
use vl_training::eval::retrieval::Rankings;

/// Misses of one direction: counts per (difference, object count).
#[derive(Default)]
struct Tally {
    /// Queries per object count of the right image.
    queries: [usize; MAX_OBJECTS],
    /// Misses per kind of difference and object count.
    misses: BTreeMap<Difference, [usize; MAX_OBJECTS]>,
    /// One-object scenes read as another shape: (size, right, retrieved).
    shapes: HashMap<(Size, Shape, Shape), usize>,
}

impl Tally {
    fn add(&mut self, right: &Scene, retrieved: &Scene) {
        let objects = right.objects.len().clamp(1, MAX_OBJECTS) - 1;
        self.queries[objects] += 1;
        if right.id == retrieved.id {
            return;
        }
        let kind = difference(right, retrieved);
        self.misses.entry(kind).or_default()[objects] += 1;
        if let ([a], [b], Difference::Shapes) = (&right.objects[..], &retrieved.objects[..], kind) {
            *self.shapes.entry((a.size, a.shape, b.shape)).or_default() += 1;
        }
    }

    fn print(&self, title: &str) {
        println!("\n{title}");
        let header: Vec<String> = (1..=MAX_OBJECTS).map(|n| format!("{n} obj")).collect();
        println!(
            "{:<28}{:>7}{:>7}{:>7}{:>7}{:>7}",
            "", header[0], header[1], header[2], header[3], "all"
        );
        let row = |name: &str, counts: &[usize; MAX_OBJECTS]| {
            let all: usize = counts.iter().sum();
            println!(
                "{name:<28}{:>7}{:>7}{:>7}{:>7}{all:>7}",
                counts[0], counts[1], counts[2], counts[3]
            );
        };
        row("queries", &self.queries);
        let mut missed = [0; MAX_OBJECTS];
        for counts in self.misses.values() {
            for (m, c) in missed.iter_mut().zip(counts) {
                *m += c;
            }
        }
        row("missed at 1", &missed);
        // The map's order is the enum's: the order of `Difference`'s docs.
        for (kind, counts) in &self.misses {
            row(&format!("  {}", kind.name()), counts);
        }
        let mut shapes: Vec<(String, usize)> = self
            .shapes
            .iter()
            .map(|((size, right, retrieved), &n)| {
                (
                    format!("{size:?} {right:?} → {retrieved:?}").to_lowercase(),
                    n,
                )
            })
            .collect();
        shapes.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        if !shapes.is_empty() {
            let top: Vec<String> = shapes
                .iter()
                .take(8)
                .map(|(pair, n)| format!("{pair} {n}"))
                .collect();
            println!(
                "one-object shape misses (right → retrieved): {}",
                top.join(", ")
            );
        }
    }
}

/// Prints both directions' misses; `itc` reads the ranking by contrastive
/// similarity alone instead of the ITM re-ranking.
pub fn run(run_dir: &Path, world: Option<PathBuf>, itc: bool) -> anyhow::Result<()> {
    let path = run_dir.join("rankings.json");
    let rankings: Rankings = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let world_dir = match world {
        Some(dir) => dir,
        // `WORLD/images/NNNNNN.png`, as the world's manifests name them.
        None => rankings
            .images
            .first()
            .and_then(|image| image.parent()?.parent())
            .map(Path::to_path_buf)
            .context("rankings.json lists no images; give --world")?,
    };
    let record = read_world(&world_dir).with_context(|| {
        format!(
            "reading the world in {} (give --world)",
            world_dir.display()
        )
    })?;
    let by_file: HashMap<&str, &Scene> = record
        .scenes
        .iter()
        .filter_map(|scene| Some((Path::new(&scene.image).file_name()?.to_str()?, scene)))
        .collect();
    let scenes = rankings
        .images
        .iter()
        .map(|image| {
            image
                .file_name()
                .and_then(|name| by_file.get(name.to_str()?).copied())
                .with_context(|| {
                    format!(
                        "{} is not an image of {}",
                        image.display(),
                        world_dir.display()
                    )
                })
        })
        .collect::<anyhow::Result<Vec<&Scene>>>()?;
    let (i2t, t2i) = if itc {
        (&rankings.i2t_itc, &rankings.t2i_itc)
    } else {
        (&rankings.i2t, &rankings.t2i)
    };
    if i2t.len() != scenes.len() || t2i.len() != rankings.txt2img.len() {
        bail!(
            "{} does not match its own image and text lists",
            path.display()
        );
    }

    let mut text_to_image = Tally::default();
    for (t, ranked) in t2i.iter().enumerate() {
        let best = *ranked.first().context("an empty ranking")?;
        text_to_image.add(scenes[rankings.txt2img[t]], scenes[best]);
    }
    let mut image_to_text = Tally::default();
    for (i, ranked) in i2t.iter().enumerate() {
        let best = *ranked.first().context("an empty ranking")?;
        image_to_text.add(scenes[i], scenes[rankings.txt2img[best]]);
    }
    let ranking = if itc {
        "ITC similarity"
    } else {
        "ITM re-ranking"
    };
    println!(
        "{} images, {} captions of {} ({ranking}); a miss is counted under how the \
         retrieved image (or the retrieved caption's image) differs from the right one",
        scenes.len(),
        rankings.texts.len(),
        world_dir.display()
    );
    text_to_image.print("text → image (per caption, by objects in its image)");
    image_to_text.print("image → text (per image)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vl_data::world::{Colour, Object, Region};

    fn scene(id: usize, objects: &[(Shape, Colour, Size)]) -> Scene {
        Scene {
            id,
            image: format!("images/{id:06}.png"),
            split: "test".into(),
            objects: objects
                .iter()
                .map(|&(shape, colour, size)| Object {
                    shape,
                    colour,
                    size,
                    region: Region { column: 1, row: 1 },
                    bbox: [0.0; 4],
                })
                .collect(),
            background_seed: 0,
        }
    }

    #[test]
    fn a_tally_counts_queries_and_sorts_misses() {
        let red_square = scene(0, &[(Shape::Square, Colour::Red, Size::Small)]);
        let red_circle = scene(1, &[(Shape::Circle, Colour::Red, Size::Small)]);
        let pair = scene(
            2,
            &[
                (Shape::Square, Colour::Red, Size::Small),
                (Shape::Star, Colour::Blue, Size::Large),
            ],
        );
        let mut tally = Tally::default();
        tally.add(&red_square, &red_square);
        tally.add(&red_square, &red_circle);
        tally.add(&pair, &red_square);
        assert_eq!(tally.queries, [2, 1, 0, 0]);
        assert_eq!(tally.misses[&Difference::Shapes], [1, 0, 0, 0]);
        assert_eq!(tally.misses[&Difference::Count], [0, 1, 0, 0]);
        assert_eq!(tally.misses.len(), 2);
        assert_eq!(
            tally.shapes[&(Size::Small, Shape::Square, Shape::Circle)],
            1
        );
    }
}
