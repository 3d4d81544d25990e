//! Grounding evaluation as salesforce/ALBEF `Grounding.py` `val` and
//! `dataset/utils.py` `grounding_eval` do it: the Grad-CAM map of each
//! expression ([`vl_models::albef::gradcam`]) upsampled bicubically to the
//! image's size, each candidate box scored by the map's sum inside it over
//! the square root of its area, the best one right when its IoU with the
//! true box is at least 0.5. Where every candidate scores 0 or less the
//! reference keeps the previous expression's box (its `max_score` starts at
//! 0); here the best-scoring candidate is taken all the same.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor};
use image::{Rgb, RgbImage};
use serde::Serialize;
use vl_data::TextTokenizer;
use vl_data::grounding::{BoundingBox, GroundingExample, iou};
use vl_data::loader::load_rgb;
use vl_models::Albef;

use crate::TrainError;
use crate::albef::ve::text_input;
use crate::runner::progress;

/// How one expression was grounded.
#[derive(Debug, Clone)]
pub struct Grounded {
    /// Index of the chosen candidate.
    pub chosen: usize,
    /// IoU of the chosen candidate with the true box ≥ 0.5.
    pub correct: bool,
    /// The upsampled map, `height × width` row-major.
    pub map: Vec<f32>,
    /// The image.
    pub image: RgbImage,
}

/// Accuracies over a set of expressions (fractions).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroundingScores {
    /// All expressions.
    pub d: f64,
    /// Expressions with two or more candidates.
    pub d_multi: Option<f64>,
    /// Expressions scored.
    pub count: usize,
    /// Of them, with two or more candidates.
    pub count_multi: usize,
    /// Picking a candidate at random, averaged over the expressions.
    pub chance: f64,
    /// Per refs-file split (`testA`, `testB`, …), where one was given.
    pub by_split: BTreeMap<String, f64>,
}

/// Grounds expressions with a model's Grad-CAM.
pub struct Grounder<'a> {
    /// The model, dropout off.
    pub model: &'a Albef,
    /// Its tokenizer.
    pub tokenizer: &'a TextTokenizer,
    /// Input side of the image encoder.
    pub image_res: usize,
    /// Tokens per expression.
    pub max_tokens: usize,
    /// The probed BERT layer.
    pub layer: usize,
    /// Expressions per Grad-CAM pass.
    pub batch_size: usize,
    /// Where to compute.
    pub device: &'a Device,
}

impl Grounder<'_> {
    /// Grounds every example, in order.
    pub fn ground(&self, examples: &[GroundingExample]) -> Result<Vec<Grounded>, TrainError> {
        let model = self.model.valid();
        let bar = progress::bar(examples.len() as u64, "grounding");
        let mut out = Vec::with_capacity(examples.len());
        for chunk in examples.chunks(self.batch_size.max(1)) {
            let paths: Vec<&Path> = chunk.iter().map(|e| e.expression.image.as_path()).collect();
            let pixels = vl_data::eval_images(&paths, self.image_res as u32)?;
            let texts: Vec<&str> = chunk.iter().map(|e| e.expression.text.as_str()).collect();
            let text = self.tokenizer.encode_batch(&texts, Some(self.max_tokens))?;
            let cam = model.grad_cam(
                pixels.to_tensor(self.device),
                &text_input(&text, self.device),
                self.layer,
                self.device,
            );
            let [_, side, _] = cam.maps.dims();
            for (i, example) in chunk.iter().enumerate() {
                let image = load_rgb(&example.expression.image)?;
                let (w, h) = image.dimensions();
                let map = cam
                    .maps
                    .clone()
                    .slice([i..i + 1, 0..side, 0..side])
                    .reshape([1, 1, side, side]);
                let options = InterpolateOptions::new(InterpolateMode::Bicubic)
                    .with_align_corners(false)
                    .with_output_size([h as usize, w as usize]);
                let map: Tensor<4> = interpolate(map, options);
                let map = map
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("f32");
                let scores: Vec<f64> = example
                    .candidates
                    .iter()
                    .map(|b| box_score(&map, w as usize, h as usize, *b))
                    .collect();
                let chosen = (0..scores.len())
                    .max_by(|&a, &b| scores[a].total_cmp(&scores[b]))
                    .unwrap_or(0);
                let correct = example
                    .candidates
                    .get(chosen)
                    .is_some_and(|b| iou(*b, example.truth) >= 0.5);
                out.push(Grounded {
                    chosen,
                    correct,
                    map,
                    image,
                });
            }
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(out)
    }
}

/// The map's sum over the box's pixels (the reference's integer slice
/// `[int(y) : int(y + h), int(x) : int(x + w)]`, clipped to the image)
/// over the square root of the box's area.
pub fn box_score(map: &[f32], width: usize, height: usize, b: BoundingBox) -> f64 {
    let clip = |v: f64, max: usize| (v.max(0.0) as usize).min(max);
    let (x0, x1) = (clip(b[0], width), clip(b[0] + b[2], width));
    let (y0, y1) = (clip(b[1], height), clip(b[1] + b[3], height));
    let sum: f64 = (y0..y1)
        .flat_map(|y| (x0..x1).map(move |x| map[y * width + x] as f64))
        .sum();
    sum / (b[2] * b[3]).sqrt()
}

/// Accuracies of `grounded` (in the order of `examples`).
pub fn scores(examples: &[GroundingExample], grounded: &[Grounded]) -> GroundingScores {
    let fraction = |hits: usize, n: usize| hits as f64 / n.max(1) as f64;
    let multi: Vec<bool> = examples.iter().map(|e| e.candidates.len() >= 2).collect();
    let hits = grounded.iter().filter(|g| g.correct).count();
    let count_multi = multi.iter().filter(|&&m| m).count();
    let hits_multi = grounded
        .iter()
        .zip(&multi)
        .filter(|(g, m)| **m && g.correct)
        .count();
    // A random pick is right with the share of candidates that match.
    let chance = examples
        .iter()
        .map(|e| {
            let right = e.candidates.iter().filter(|b| iou(**b, e.truth) >= 0.5);
            fraction(right.count(), e.candidates.len())
        })
        .sum::<f64>()
        / examples.len().max(1) as f64;
    let mut by_split: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (e, g) in examples.iter().zip(grounded) {
        if let Some(split) = &e.split {
            let entry = by_split.entry(split.clone()).or_default();
            entry.0 += usize::from(g.correct);
            entry.1 += 1;
        }
    }
    GroundingScores {
        d: fraction(hits, examples.len()),
        d_multi: (count_multi > 0).then(|| fraction(hits_multi, count_multi)),
        count: examples.len(),
        count_multi,
        chance,
        by_split: by_split
            .into_iter()
            .map(|(k, (hits, n))| (k, fraction(hits, n)))
            .collect(),
    }
}

/// The image scaled up `scale` times with the map over it (red, by its
/// share of the image's maximum), the chosen box in green and the true box
/// in blue.
pub fn draw(example: &GroundingExample, grounded: &Grounded, scale: u32) -> RgbImage {
    let (w, h) = grounded.image.dimensions();
    let top = grounded
        .map
        .iter()
        .fold(f32::MIN_POSITIVE, |m, v| m.max(*v));
    let mut out = RgbImage::from_fn(w * scale, h * scale, |x, y| {
        let (sx, sy) = (x / scale, y / scale);
        let heat = (grounded.map[(sy * w + sx) as usize].max(0.0) / top).min(1.0);
        let Rgb(p) = *grounded.image.get_pixel(sx, sy);
        let blend =
            |c: u8, target: f32| (c as f32 * (1.0 - 0.6 * heat) + target * 0.6 * heat) as u8;
        Rgb([blend(p[0], 255.0), blend(p[1], 0.0), blend(p[2], 0.0)])
    });
    let mut rectangle = |b: BoundingBox, colour: [u8; 3]| {
        let s = scale as f64;
        let (x0, y0) = ((b[0] * s) as i64, (b[1] * s) as i64);
        let (x1, y1) = (
            ((b[0] + b[2]) * s) as i64 - 1,
            ((b[1] + b[3]) * s) as i64 - 1,
        );
        let mut put = |x: i64, y: i64| {
            if x >= 0 && y >= 0 && (x as u32) < w * scale && (y as u32) < h * scale {
                out.put_pixel(x as u32, y as u32, Rgb(colour));
            }
        };
        for x in x0..=x1 {
            put(x, y0);
            put(x, y1);
        }
        for y in y0..=y1 {
            put(x0, y);
            put(x1, y);
        }
    };
    rectangle(example.truth, [40, 80, 255]);
    if let Some(b) = example.candidates.get(grounded.chosen) {
        rectangle(*b, [0, 220, 0]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_box_scores_its_sum_over_the_root_of_its_area() {
        // 4×3 map of ones with a hot 2×2 corner.
        let mut map = vec![1.0f32; 12];
        for (x, y) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            map[y * 4 + x] = 5.0;
        }
        assert!((box_score(&map, 4, 3, [0.0, 0.0, 2.0, 2.0]) - 20.0 / 2.0).abs() < 1e-12);
        // Clipped at the edge: 1 pixel of the 4×1 box lies inside.
        assert!((box_score(&map, 4, 3, [3.0, 2.0, 4.0, 1.0]) - 1.0 / 2.0).abs() < 1e-12);
    }
}
