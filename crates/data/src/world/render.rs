//! Drawing a scene: a muted textured background, then each object as an
//! anti-aliased (4 × 4 supersampled) filled shape.

use image::{Rgb, RgbImage};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::{Object, Scene, Shape, radius};

/// Renders `scene` at `side × side` pixels.
pub fn render(scene: &Scene, side: u32) -> RgbImage {
    let mut rng = StdRng::seed_from_u64(scene.background_seed);
    let mut image = background(&mut rng, side);
    for object in &scene.objects {
        draw(&mut image, object, side as f32, &mut rng);
    }
    image
}

/// A low-saturation base colour with one of three textures (stripes, soft
/// checks, smooth waves) and pixel noise.
fn background(rng: &mut StdRng, side: u32) -> RgbImage {
    let hue = rng.random_range(0.0..360.0);
    let base = hsv(
        hue,
        rng.random_range(0.05..0.25),
        rng.random_range(0.30..0.60),
    );
    let texture = rng.random_range(0..3u8);
    let angle: f32 = rng.random_range(0.0..std::f32::consts::PI);
    let frequency = rng.random_range(0.15..0.6);
    let amplitude = rng.random_range(8.0..22.0);
    let waves: Vec<(f32, f32, f32)> = (0..3)
        .map(|_| {
            (
                rng.random_range(-0.3..0.3),
                rng.random_range(-0.3..0.3),
                rng.random_range(0.0..std::f32::consts::TAU),
            )
        })
        .collect();
    let mut image = RgbImage::new(side, side);
    for (x, y, pixel) in image.enumerate_pixels_mut() {
        let (xf, yf) = (x as f32, y as f32);
        let t = match texture {
            0 => (frequency * (xf * angle.cos() + yf * angle.sin())).sin(),
            1 => ((frequency * xf).sin() * (frequency * yf).sin()).signum() * 0.6,
            _ => {
                waves
                    .iter()
                    .map(|&(a, b, p)| (a * xf + b * yf + p).sin())
                    .sum::<f32>()
                    / 3.0
            }
        };
        let noise = rng.random_range(-6.0..6.0);
        let shade = t * amplitude + noise;
        *pixel = Rgb(base.map(|c| (c + shade).clamp(0.0, 255.0) as u8));
    }
    image
}

fn hsv(hue: f32, saturation: f32, value: f32) -> [f32; 3] {
    let c = value * saturation;
    let h = hue / 60.0;
    let x = c * (1.0 - (h % 2.0 - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = value - c;
    [(r + m) * 255.0, (g + m) * 255.0, (b + m) * 255.0]
}

fn draw(image: &mut RgbImage, object: &Object, side: f32, rng: &mut StdRng) {
    let r = radius(object.size, side);
    let [x, y, w, h] = object.bbox;
    let (cx, cy) = (x + w / 2.0, y + h / 2.0);
    let jitter: [f32; 3] = [
        rng.random_range(-12.0..12.0),
        rng.random_range(-12.0..12.0),
        rng.random_range(-12.0..12.0),
    ];
    let colour = object.colour.rgb();
    let colour: [f32; 3] =
        std::array::from_fn(|i| (colour[i] as f32 + jitter[i]).clamp(0.0, 255.0));
    let polygon = outline(object.shape);
    let (x0, x1) = (
        (cx - r).floor().max(0.0) as u32,
        ((cx + r).ceil() as u32).min(side as u32 - 1),
    );
    let (y0, y1) = (
        (cy - r).floor().max(0.0) as u32,
        ((cy + r).ceil() as u32).min(side as u32 - 1),
    );
    const SUB: u32 = 4;
    for py in y0..=y1 {
        for px in x0..=x1 {
            let mut hits = 0;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let u = (px as f32 + (sx as f32 + 0.5) / SUB as f32 - cx) / r;
                    let v = (py as f32 + (sy as f32 + 0.5) / SUB as f32 - cy) / r;
                    hits += u32::from(inside(object.shape, &polygon, u, v));
                }
            }
            if hits == 0 {
                continue;
            }
            let alpha = hits as f32 / (SUB * SUB) as f32;
            let pixel = image.get_pixel_mut(px, py);
            for c in 0..3 {
                pixel.0[c] = (alpha * colour[c] + (1.0 - alpha) * pixel.0[c] as f32).round() as u8;
            }
        }
    }
}

/// Polygon outlines in unit coordinates (y down), for the polygonal shapes.
fn outline(shape: Shape) -> Vec<(f32, f32)> {
    let regular = |n: usize, start: f32, radii: &[f32]| -> Vec<(f32, f32)> {
        (0..n * radii.len())
            .map(|i| {
                let angle = start + i as f32 * std::f32::consts::TAU / (n * radii.len()) as f32;
                let r = radii[i % radii.len()];
                (r * angle.cos(), r * angle.sin())
            })
            .collect()
    };
    let up = -std::f32::consts::FRAC_PI_2;
    match shape {
        Shape::Triangle => regular(3, up, &[1.0])
            .into_iter()
            .map(|(x, y)| (x * 1.1, y * 1.1 + 0.15))
            .collect(),
        Shape::Star => regular(5, up, &[1.0, 0.45]),
        Shape::Hexagon => regular(6, 0.0, &[1.0]),
        _ => Vec::new(),
    }
}

fn inside(shape: Shape, polygon: &[(f32, f32)], u: f32, v: f32) -> bool {
    match shape {
        Shape::Circle => u * u + v * v <= 1.0,
        Shape::Square => u.abs().max(v.abs()) <= 0.8,
        Shape::Diamond => u.abs() + v.abs() <= 1.0,
        Shape::Cross => (u.abs() <= 0.3 && v.abs() <= 0.95) || (v.abs() <= 0.3 && u.abs() <= 0.95),
        Shape::Triangle | Shape::Star | Shape::Hexagon => {
            // Even-odd rule.
            let mut inside = false;
            let mut j = polygon.len() - 1;
            for i in 0..polygon.len() {
                let ((xi, yi), (xj, yj)) = (polygon[i], polygon[j]);
                if (yi > v) != (yj > v) && u < (xj - xi) * (v - yi) / (yj - yi) + xi {
                    inside = !inside;
                }
                j = i;
            }
            inside
        }
    }
}
