//! The transforms against PIL's and torchvision's behaviour.

use super::*;
use rand::SeedableRng;
use rand::rngs::StdRng;

#[test]
fn mirror_caption_swaps_whole_words_both_ways() {
    let pairs = [
        ["left".to_owned(), "right".to_owned()],
        ["左".to_owned(), "右".to_owned()],
    ];
    assert_eq!(
        mirror_caption("a cross at the top left, a star on the right", &pairs),
        "a cross at the top right, a star on the left"
    );
    assert_eq!(
        mirror_caption("Left of the bright leftover: right.", &pairs),
        "Right of the bright leftover: left."
    );
    assert_eq!(
        mirror_caption("左上角有一个红色圆形，右边", &pairs),
        "右上角有一个红色圆形，左边"
    );
    assert_eq!(
        mirror_caption("no positions here", &pairs),
        "no positions here"
    );
    assert_eq!(mirror_caption("left", &[]), "left");
}

#[test]
fn pre_caption_follows_the_reference() {
    assert_eq!(
        pre_caption("A man, riding a Horse!", 30),
        "a man riding a horse"
    );
    assert_eq!(
        pre_caption("  two  dogs -- on a bench/sofa  ", 30),
        "two dogs on a bench sofa"
    );
    assert_eq!(pre_caption("<person> waves", 30), "person waves");
    assert_eq!(pre_caption("one two three four", 2), "one two");
}

#[test]
fn resize_preserves_a_flat_image_and_downsamples_smoothly() {
    let flat = RgbImage::from_pixel(40, 30, Rgb([10, 200, 77]));
    let small = resize_bicubic(&flat, 16, 12);
    assert!(small.pixels().all(|p| p.0 == [10, 200, 77]));
    // A 1-pixel checkerboard averages to grey when shrunk 4×.
    let checker = RgbImage::from_fn(32, 32, |x, y| {
        if (x + y) % 2 == 0 {
            Rgb([0; 3])
        } else {
            Rgb([255; 3])
        }
    });
    let grey = resize_bicubic(&checker, 8, 8);
    assert!(
        grey.pixels().all(|p| (p.0[0] as i32 - 128).abs() <= 2),
        "{:?}",
        grey.get_pixel(3, 3)
    );
}

#[test]
fn resampling_the_whole_image_at_its_size_copies_it() {
    let mut rng = StdRng::seed_from_u64(11);
    let image = RgbImage::from_fn(32, 24, |_, _| Rgb(rng.random::<[u8; 3]>()));
    let copy = resample_bicubic(&image, (0.0, 0.0, 32.0, 24.0), 32, 24);
    assert!(
        copy == image,
        "bicubic weights at integer offsets are not 1, 0, 0"
    );
    // A box one pixel in from the edge is a real resample.
    let shifted = resample_bicubic(&image, (1.0, 0.0, 32.0, 24.0), 32, 24);
    assert!(shifted != image);
}

#[test]
fn crops_have_the_right_size_and_ops_keep_it() {
    let mut rng = StdRng::seed_from_u64(5);
    let image = RgbImage::from_fn(50, 40, |x, y| Rgb([(x * 5) as u8, (y * 6) as u8, 90]));
    for _ in 0..20 {
        let crop = random_resized_crop(&image, 24, (0.2, 1.0), &mut rng);
        assert_eq!(crop.dimensions(), (24, 24));
    }
    for op in AugmentOp::ALL {
        assert_eq!(
            apply_op(&image, op, 7.0, &mut rng).dimensions(),
            (50, 40),
            "{op:?}"
        );
    }
}

#[test]
fn translation_shifts_content_and_fills_grey() {
    let image = RgbImage::from_fn(20, 20, |x, _| Rgb([(x * 10) as u8, 0, 0]));
    // Offset 7: content moves left by 7, the right edge fills with 128.
    let moved = warp_affine(&image, [[1.0, 0.0, -7.0], [0.0, 1.0, 0.0]]);
    assert_eq!(moved.get_pixel(0, 5).0[0], 70);
    assert_eq!(moved.get_pixel(19, 5).0, [128, 128, 128]);
}

#[test]
fn normalisation_uses_clip_statistics() {
    let image = RgbImage::from_pixel(1, 1, Rgb([255, 0, 128]));
    let mut out = Vec::new();
    to_normalized_chw(&image, &mut out);
    assert!((out[0] - (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]).abs() < 1e-6);
    assert!((out[1] - (0.0 - CLIP_MEAN[1]) / CLIP_STD[1]).abs() < 1e-6);
}
