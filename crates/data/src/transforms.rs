//! Image transforms and caption cleaning of the ALBEF reference
//! (salesforce/ALBEF@b9727e4 `dataset/__init__.py`, `dataset/randaugment.py`,
//! `dataset/utils.py`).
//!
//! Images stay 8-bit RGB until [`to_normalized_chw`], as with PIL and
//! OpenCV in the reference. The resampler follows PIL's antialiased bicubic
//! (a = −0.5, support widened when downsampling) in floating point, rounding
//! to 8 bits after each pass, so it lands within one grey level of PIL's
//! fixed-point result. RandAugment's geometric ops follow `cv2.warpAffine`
//! (bilinear, constant grey border).

use image::{Rgb, RgbImage};
use rand::RngExt;
use serde::{Deserialize, Serialize};

/// CLIP's per-channel mean, which ALBEF normalises with.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's per-channel standard deviation.
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

/// The random augmentation of training images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AugmentConfig {
    /// RandomResizedCrop area range (0.2–1.0 in pretraining, 0.5–1.0 in
    /// fine-tuning).
    pub crop_scale: (f64, f64),
    /// Flip horizontally with probability 0.5.
    pub horizontal_flip: bool,
    /// Word pairs swapped in the caption of a flipped image (`[left, right]`),
    /// so that captions naming positions stay true of the mirrored image; the
    /// reference flips without touching the caption. Empty: captions are
    /// kept as they are.
    pub mirror_words: Vec<[String; 2]>,
    /// RandAugment: number of ops per image (0 disables it).
    pub randaugment_ops: usize,
    /// RandAugment magnitude (of 10).
    pub randaugment_magnitude: f64,
}

impl Default for AugmentConfig {
    /// The reference's pretraining augmentation.
    fn default() -> Self {
        Self {
            crop_scale: (0.2, 1.0),
            horizontal_flip: true,
            mirror_words: Vec::new(),
            randaugment_ops: 2,
            randaugment_magnitude: 7.0,
        }
    }
}

/// A training transform: crop, resize, flip, RandAugment.
pub fn train_transform(
    image: &RgbImage,
    size: u32,
    config: &AugmentConfig,
    rng: &mut impl RngExt,
) -> RgbImage {
    train_transform_flip(image, size, config, rng).0
}

/// [`train_transform`], also telling whether the image was flipped (its
/// caption then wants [`mirror_caption`]).
pub fn train_transform_flip(
    image: &RgbImage,
    size: u32,
    config: &AugmentConfig,
    rng: &mut impl RngExt,
) -> (RgbImage, bool) {
    let mut out = random_resized_crop(image, size, config.crop_scale, rng);
    let flipped = config.horizontal_flip && rng.random_bool(0.5);
    if flipped {
        out = image::imageops::flip_horizontal(&out);
    }
    if config.randaugment_ops > 0 {
        out = rand_augment(
            &out,
            config.randaugment_ops,
            config.randaugment_magnitude,
            rng,
        );
    }
    (out, flipped)
}

/// Swaps each pair of `words` (whole words, ASCII case-insensitive, the
/// first letter's case kept) in a caption: "a cross on the left" becomes
/// "a cross on the right" for the pair `[left, right]`. A word is delimited
/// by characters that are not ASCII alphanumerics, so pairs in scripts
/// without spaces (`[左, 右]`) match anywhere.
pub fn mirror_caption(caption: &str, words: &[[String; 2]]) -> String {
    let is_word = |c: char| c.is_ascii_alphanumeric();
    let mut out = String::with_capacity(caption.len());
    let mut rest = caption;
    'scan: while let Some(c) = rest.chars().next() {
        // The output ends as the input before `rest` does, up to case.
        let at_boundary = !out.chars().next_back().is_some_and(is_word);
        for [a, b] in words {
            for (from, to) in [(a, b), (b, a)] {
                let Some(head) = rest.get(..from.len()) else {
                    continue;
                };
                let starts_word = from.chars().next().is_some_and(is_word);
                let ends_word = from.chars().next_back().is_some_and(is_word);
                let next = rest[from.len()..].chars().next();
                if from.is_empty()
                    || !head.eq_ignore_ascii_case(from)
                    || (starts_word && !at_boundary)
                    || (ends_word && next.is_some_and(is_word))
                {
                    continue;
                }
                if head.starts_with(|c: char| c.is_ascii_uppercase()) {
                    let mut chars = to.chars();
                    out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
                    out.push_str(chars.as_str());
                } else {
                    out.push_str(to);
                }
                rest = &rest[from.len()..];
                continue 'scan;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The evaluation transform: resize to `size × size` (aspect not kept).
pub fn eval_transform(image: &RgbImage, size: u32) -> RgbImage {
    resize_bicubic(image, size, size)
}

/// CLIP's evaluation transform (OpenAI `clip.load`'s preprocessing, HF
/// `CLIPImageProcessor`): the shorter side resized to `size` (bicubic), the
/// longer in proportion (truncated), then the centre `size × size` crop.
/// A square image gets exactly [`eval_transform`].
pub fn clip_transform(image: &RgbImage, size: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    let scaled = |long: u32, short: u32| {
        (u64::from(long) * u64::from(size) / u64::from(short.max(1))) as u32
    };
    let (w2, h2) = if w <= h {
        (size, scaled(h, w).max(size))
    } else {
        (scaled(w, h).max(size), size)
    };
    let resized = resize_bicubic(image, w2, h2);
    let (left, top) = ((w2 - size) / 2, (h2 - size) / 2);
    image::imageops::crop_imm(&resized, left, top, size, size).to_image()
}

/// HWC 8-bit → CHW float, scaled to [0, 1] then normalised with
/// [`CLIP_MEAN`]/[`CLIP_STD`]; appended to `out`.
pub fn to_normalized_chw(image: &RgbImage, out: &mut Vec<f32>) {
    let (w, h) = image.dimensions();
    let plane = (w * h) as usize;
    let start = out.len();
    out.resize(start + 3 * plane, 0.0);
    for (i, pixel) in image.pixels().enumerate() {
        for c in 0..3 {
            out[start + c * plane + i] = (pixel.0[c] as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c];
        }
    }
}

// ---------------------------------------------------------------------------
// Resampling

fn bicubic_filter(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Per output index: first input index and normalised weights (PIL's
/// `precompute_coeffs`).
fn coefficients(in_size: u32, out_size: u32, offset: f64, span: f64) -> Vec<(usize, Vec<f32>)> {
    let scale = span / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    (0..out_size)
        .map(|i| {
            let center = offset + (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(in_size as usize);
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| bicubic_filter((j as f64 - center + 0.5) / filter_scale))
                .collect();
            let total: f64 = weights.iter().sum();
            if total != 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            (lo, weights.into_iter().map(|w| w as f32).collect())
        })
        .collect()
}

/// PIL's antialiased bicubic resize of the box `[x0, x0+w) × [y0, y0+h)`
/// (fractional boxes allowed) to `out_w × out_h`: horizontal pass, then
/// vertical, each rounded to 8 bits.
pub fn resize_box_bicubic(
    image: &RgbImage,
    box_: (f64, f64, f64, f64),
    out_w: u32,
    out_h: u32,
) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    // The whole image at its own size: every weight is 1 on its own pixel
    // and 0 elsewhere, so resampling would copy it (unit test
    // `resampling_the_whole_image_at_its_size_copies_it`). The synthetic
    // world's crop (scale 1) lands here on every training image.
    if box_ == (0.0, 0.0, in_w as f64, in_h as f64) && (out_w, out_h) == (in_w, in_h) {
        return image.clone();
    }
    resample_bicubic(image, box_, out_w, out_h)
}

/// [`resize_box_bicubic`] without its shortcut.
fn resample_bicubic(
    image: &RgbImage,
    (x0, y0, w, h): (f64, f64, f64, f64),
    out_w: u32,
    out_h: u32,
) -> RgbImage {
    let (in_w, in_h) = image.dimensions();
    let horizontal = coefficients(in_w, out_w, x0, w);
    let vertical = coefficients(in_h, out_h, y0, h);
    // Only the rows the vertical pass reads.
    let row_lo = vertical.iter().map(|(lo, _)| *lo).min().unwrap_or(0);
    let row_hi = vertical
        .iter()
        .map(|(lo, w)| lo + w.len())
        .max()
        .unwrap_or(0);
    let mut mid = vec![[0u8; 3]; out_w as usize * (row_hi - row_lo)];
    for y in row_lo..row_hi {
        for (x, (lo, weights)) in horizontal.iter().enumerate() {
            let mut acc = [0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let p = image.get_pixel((lo + k) as u32, y as u32).0;
                for c in 0..3 {
                    acc[c] += w * p[c] as f32;
                }
            }
            mid[(y - row_lo) * out_w as usize + x] = acc.map(|v| v.round().clamp(0.0, 255.0) as u8);
        }
    }
    let mut out = RgbImage::new(out_w, out_h);
    for (y, (lo, weights)) in vertical.iter().enumerate() {
        for x in 0..out_w as usize {
            let mut acc = [0f32; 3];
            for (k, w) in weights.iter().enumerate() {
                let p = mid[(lo + k - row_lo) * out_w as usize + x];
                for c in 0..3 {
                    acc[c] += w * p[c] as f32;
                }
            }
            out.put_pixel(
                x as u32,
                y as u32,
                Rgb(acc.map(|v| v.round().clamp(0.0, 255.0) as u8)),
            );
        }
    }
    out
}

/// PIL-style bicubic resize of the whole image.
pub fn resize_bicubic(image: &RgbImage, out_w: u32, out_h: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    resize_box_bicubic(image, (0.0, 0.0, w as f64, h as f64), out_w, out_h)
}

/// torchvision's `RandomResizedCrop(size, scale, ratio=(3/4, 4/3))`: up to
/// ten tries for a box of random area and aspect inside the image, else a
/// centre crop with the aspect clamped; then a bicubic resize.
pub fn random_resized_crop(
    image: &RgbImage,
    size: u32,
    scale: (f64, f64),
    rng: &mut impl RngExt,
) -> RgbImage {
    let (width, height) = image.dimensions();
    let area = (width * height) as f64;
    let (log_lo, log_hi) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(scale.0..=scale.1);
        let aspect = rng.random_range(log_lo..=log_hi).exp();
        let w = (target * aspect).sqrt().round() as u32;
        let h = (target / aspect).sqrt().round() as u32;
        if 0 < w && w <= width && 0 < h && h <= height {
            let top = rng.random_range(0..=height - h);
            let left = rng.random_range(0..=width - w);
            return resize_box_bicubic(
                image,
                (left as f64, top as f64, w as f64, h as f64),
                size,
                size,
            );
        }
    }
    let ratio = width as f64 / height as f64;
    let (w, h) = if ratio < 3.0 / 4.0 {
        (width, (width as f64 / (3.0 / 4.0)).round() as u32)
    } else if ratio > 4.0 / 3.0 {
        ((height as f64 * 4.0 / 3.0).round() as u32, height)
    } else {
        (width, height)
    };
    let (top, left) = ((height - h.min(height)) / 2, (width - w.min(width)) / 2);
    resize_box_bicubic(
        image,
        (left as f64, top as f64, w as f64, h as f64),
        size,
        size,
    )
}

// ---------------------------------------------------------------------------
// RandAugment (ALBEF's `RandomAugment(2, 7, isPIL=True, augs=[...])`)

/// The ops ALBEF draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AugmentOp {
    /// No change.
    Identity,
    /// Per-channel min–max stretch.
    AutoContrast,
    /// Per-channel histogram equalisation (PIL's).
    Equalize,
    /// Brighter by `magnitude/10·1.8 + 0.1`.
    Brightness,
    /// Sharper by the same factor.
    Sharpness,
    /// Shear along x by ±0.3·magnitude/10.
    ShearX,
    /// Shear along y.
    ShearY,
    /// Shift along x by ±magnitude pixels (`translate_const` 10).
    TranslateX,
    /// Shift along y.
    TranslateY,
    /// Rotate by ±30°·magnitude/10 about the centre.
    Rotate,
}

impl AugmentOp {
    /// The reference's op list, in its order.
    pub const ALL: [AugmentOp; 10] = [
        AugmentOp::Identity,
        AugmentOp::AutoContrast,
        AugmentOp::Equalize,
        AugmentOp::Brightness,
        AugmentOp::Sharpness,
        AugmentOp::ShearX,
        AugmentOp::ShearY,
        AugmentOp::TranslateX,
        AugmentOp::TranslateY,
        AugmentOp::Rotate,
    ];
}

/// Draws `n` ops uniformly with replacement and applies each with
/// probability 0.5 at `magnitude` (of 10), as the reference does.
pub fn rand_augment(image: &RgbImage, n: usize, magnitude: f64, rng: &mut impl RngExt) -> RgbImage {
    let ops: Vec<AugmentOp> = (0..n)
        .map(|_| AugmentOp::ALL[rng.random_range(0..AugmentOp::ALL.len())])
        .collect();
    let mut out = image.clone();
    for op in ops {
        if rng.random::<f64>() > 0.5 {
            continue;
        }
        out = apply_op(&out, op, magnitude, rng);
    }
    out
}

/// Applies one op (drawing its sign where it has one).
pub fn apply_op(
    image: &RgbImage,
    op: AugmentOp,
    magnitude: f64,
    rng: &mut impl RngExt,
) -> RgbImage {
    let level = magnitude / 10.0;
    let factor = level * 1.8 + 0.1;
    let signed = |v: f64, rng: &mut dyn FnMut() -> f64| if rng() > 0.5 { -v } else { v };
    let mut uniform = || rng.random::<f64>();
    let (w, h) = image.dimensions();
    match op {
        AugmentOp::Identity => image.clone(),
        AugmentOp::AutoContrast => auto_contrast(image),
        AugmentOp::Equalize => equalize(image),
        AugmentOp::Brightness => map_pixels(image, |v| {
            (v as f32 * factor as f32).clamp(0.0, 255.0) as u8
        }),
        AugmentOp::Sharpness => sharpness(image, factor as f32),
        AugmentOp::ShearX => warp_affine(
            image,
            [
                [1.0, signed(0.3 * level, &mut uniform), 0.0],
                [0.0, 1.0, 0.0],
            ],
        ),
        AugmentOp::ShearY => warp_affine(
            image,
            [
                [1.0, 0.0, 0.0],
                [signed(0.3 * level, &mut uniform), 1.0, 0.0],
            ],
        ),
        AugmentOp::TranslateX => warp_affine(
            image,
            [
                [1.0, 0.0, -signed(10.0 * level, &mut uniform)],
                [0.0, 1.0, 0.0],
            ],
        ),
        AugmentOp::TranslateY => warp_affine(
            image,
            [
                [1.0, 0.0, 0.0],
                [0.0, 1.0, -signed(10.0 * level, &mut uniform)],
            ],
        ),
        AugmentOp::Rotate => {
            // The reference negates when its draw is *below* 0.5.
            let angle = if uniform() < 0.5 {
                -30.0 * level
            } else {
                30.0 * level
            };
            let (a, b) = (angle.to_radians().cos(), angle.to_radians().sin());
            let (cx, cy) = (w as f64 / 2.0, h as f64 / 2.0);
            warp_affine(
                image,
                [
                    [a, b, (1.0 - a) * cx - b * cy],
                    [-b, a, b * cx + (1.0 - a) * cy],
                ],
            )
        }
    }
}

fn map_pixels(image: &RgbImage, f: impl Fn(u8) -> u8) -> RgbImage {
    let mut out = image.clone();
    out.pixels_mut().for_each(|p| p.0 = p.0.map(&f));
    out
}

fn auto_contrast(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for c in 0..3 {
        let (lo, hi) = image
            .pixels()
            .fold((255u8, 0u8), |(lo, hi), p| (lo.min(p.0[c]), hi.max(p.0[c])));
        if hi <= lo {
            continue;
        }
        let scale = 255.0 / (hi - lo) as f32;
        let offset = -(lo as f32) * scale;
        for p in out.pixels_mut() {
            p.0[c] = (p.0[c] as f32 * scale + offset).clamp(0.0, 255.0) as u8;
        }
    }
    out
}

fn equalize(image: &RgbImage) -> RgbImage {
    let mut out = image.clone();
    for c in 0..3 {
        let mut histogram = [0u64; 256];
        image.pixels().for_each(|p| histogram[p.0[c] as usize] += 1);
        let last_nonzero = histogram.iter().rposition(|&n| n > 0).unwrap_or(0);
        let step = (histogram.iter().sum::<u64>() - histogram[last_nonzero]) / 255;
        if step == 0 {
            continue;
        }
        let mut lut = [0u8; 256];
        let mut acc = step / 2;
        for (v, entry) in lut.iter_mut().enumerate() {
            *entry = (acc / step).min(255) as u8;
            acc += histogram[v];
        }
        out.pixels_mut().for_each(|p| p.0[c] = lut[p.0[c] as usize]);
    }
    out
}

fn sharpness(image: &RgbImage, factor: f32) -> RgbImage {
    let (w, h) = image.dimensions();
    let mut out = image.clone();
    if w < 3 || h < 3 {
        return out;
    }
    // Smoothing kernel [[1,1,1],[1,5,1],[1,1,1]]/13; the one-pixel frame
    // keeps the original pixels, as in the reference.
    for y in 1..h - 1 {
        for x in 1..w - 1 {
            let mut blurred = [0f32; 3];
            for dy in 0..3 {
                for dx in 0..3 {
                    let weight = if dx == 1 && dy == 1 { 5.0 } else { 1.0 };
                    let p = image.get_pixel(x + dx - 1, y + dy - 1).0;
                    for c in 0..3 {
                        blurred[c] += weight * p[c] as f32 / 13.0;
                    }
                }
            }
            let original = image.get_pixel(x, y).0;
            let pixel = std::array::from_fn(|c| {
                let degenerate = blurred[c].round();
                // The reference casts without clipping; we clip.
                (degenerate + factor * (original[c] as f32 - degenerate)).clamp(0.0, 255.0) as u8
            });
            out.put_pixel(x, y, Rgb(pixel));
        }
    }
    out
}

/// `cv2.warpAffine(img, M, (w, h), flags=INTER_LINEAR, borderValue=(128,)*3)`:
/// each output pixel samples the input at `M⁻¹·(x, y)` bilinearly.
fn warp_affine(image: &RgbImage, m: [[f64; 3]; 2]) -> RgbImage {
    let (w, h) = image.dimensions();
    let det = m[0][0] * m[1][1] - m[0][1] * m[1][0];
    let inv = [
        [m[1][1] / det, -m[0][1] / det],
        [-m[1][0] / det, m[0][0] / det],
    ];
    let mut out = RgbImage::new(w, h);
    for (x, y, pixel) in out.enumerate_pixels_mut() {
        let (dx, dy) = (x as f64 - m[0][2], y as f64 - m[1][2]);
        let sx = inv[0][0] * dx + inv[0][1] * dy;
        let sy = inv[1][0] * dx + inv[1][1] * dy;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let sample = |xi: f64, yi: f64| -> [f64; 3] {
            if xi < 0.0 || yi < 0.0 || xi >= w as f64 || yi >= h as f64 {
                [128.0; 3]
            } else {
                image.get_pixel(xi as u32, yi as u32).0.map(f64::from)
            }
        };
        let (p00, p10, p01, p11) = (
            sample(x0, y0),
            sample(x0 + 1.0, y0),
            sample(x0, y0 + 1.0),
            sample(x0 + 1.0, y0 + 1.0),
        );
        pixel.0 = std::array::from_fn(|c| {
            let top = p00[c] * (1.0 - fx) + p10[c] * fx;
            let bottom = p01[c] * (1.0 - fx) + p11[c] * fx;
            (top * (1.0 - fy) + bottom * fy).round().clamp(0.0, 255.0) as u8
        });
    }
    out
}

pub use captions::pre_caption;

mod captions;
#[cfg(test)]
mod tests;
