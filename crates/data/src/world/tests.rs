//! The world is deterministic, its splits apart, its labels right.

use super::*;

#[test]
fn patch_labels_mark_the_patches_an_object_covers() {
    let scene = Scene {
        id: 0,
        image: String::new(),
        split: "train".into(),
        // A large blue star centred at (12, 4): its box [6.9, -1.1,
        // 10.2, 10.2] clipped to [6.9, 0, 10.2, 9.1] covers patch
        // (0, 0) by 1.1 × 8 px (below a fifth of 64), patch (0, 1) by
        // 8 × 8 and patch (1, 1) by 8 × 1.1.
        objects: vec![object_at(
            Shape::Star,
            Colour::Blue,
            Size::Large,
            12.0,
            4.0,
            32.0,
        )],
        background_seed: 0,
    };
    let labels = patch_labels(&scene, 32, 8);
    assert_eq!(labels.len(), 16 * PATCH_LABELS);
    let star = Shape::ALL.iter().position(|s| *s == Shape::Star).unwrap();
    let blue = Colour::ALL.iter().position(|c| *c == Colour::Blue).unwrap();
    let shape_colour = star * Colour::ALL.len() + blue;
    let shape_size = Shape::ALL.len() * Colour::ALL.len() + star * 2 + 1;
    for patch in 0..16 {
        let row = &labels[patch * PATCH_LABELS..(patch + 1) * PATCH_LABELS];
        let marked = patch == 1;
        assert_eq!(
            row[shape_colour],
            f32::from(u8::from(marked)),
            "patch {patch}"
        );
        assert_eq!(
            row[shape_size],
            f32::from(u8::from(marked)),
            "patch {patch}"
        );
        assert_eq!(
            row.iter().sum::<f32>(),
            if marked { 2.0 } else { 0.0 },
            "patch {patch}"
        );
    }
}

#[test]
fn labelled_scenes_are_seeded_and_apart_from_the_world() {
    let config = WorldConfig {
        images: 300,
        val_images: 20,
        test_images: 20,
        ..WorldConfig::default()
    };
    let world = generate_scenes(&config);
    let labelled = labelled_scenes(&config, 300);
    assert_eq!(labelled, labelled_scenes(&config, 300));
    assert_ne!(
        labelled,
        labelled_scenes(
            &WorldConfig {
                seed: 1,
                ..config.clone()
            },
            300
        )
    );
    for scene in &labelled {
        assert!((1..=MAX_OBJECTS).contains(&scene.objects.len()));
        assert!(scene.id >= config.images);
        assert!(
            world
                .iter()
                .all(|w| w.objects != scene.objects && w.background_seed != scene.background_seed),
            "{scene:?} repeats a world scene"
        );
    }
}

#[test]
fn scenes_are_a_function_of_the_seed() {
    let config = WorldConfig {
        images: 40,
        val_images: 5,
        test_images: 5,
        ..WorldConfig::default()
    };
    let a = generate_scenes(&config);
    assert_eq!(a, generate_scenes(&config));
    let b = generate_scenes(&WorldConfig {
        seed: 1,
        ..config.clone()
    });
    assert_ne!(a, b);
    assert_eq!(a.iter().filter(|s| s.split == "test").count(), 5);
    for scene in &a {
        assert!((1..=4).contains(&scene.objects.len()));
        for (i, o) in scene.objects.iter().enumerate() {
            let [x, y, w, h] = o.bbox;
            assert!(
                x >= 0.0 && y >= 0.0 && x + w <= 64.0 && y + h <= 64.0,
                "{o:?}"
            );
            for p in &scene.objects[i + 1..] {
                let [px, py, pw, ph] = p.bbox;
                assert!(
                    x >= px + pw || px >= x + w || y >= py + ph || py >= y + h,
                    "overlap in {}",
                    scene.id
                );
            }
        }
    }
}

#[test]
fn minimal_pairs_change_one_shape_and_leave_held_out_scenes_alone() {
    let plain = WorldConfig {
        images: 400,
        val_images: 20,
        test_images: 20,
        ..WorldConfig::default()
    };
    let paired_config = WorldConfig {
        minimal_pairs: 1.0,
        ..plain.clone()
    };
    let (a, b) = (generate_scenes(&plain), generate_scenes(&paired_config));
    let mut pairs = 0;
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        if x.split != "train" || i % 2 == 0 {
            // Even and held-out scenes are the plain world's.
            assert_eq!(x, y, "scene {i}");
            continue;
        }
        // With fraction 1 every odd training scene pairs with the one before.
        let partner = &b[i - 1];
        assert_eq!(y.background_seed, partner.background_seed);
        assert_eq!(y.objects.len(), partner.objects.len());
        let changed = y
            .objects
            .iter()
            .zip(&partner.objects)
            .filter(|(o, p)| {
                assert_eq!((o.colour, o.size, o.region), (p.colour, p.size, p.region));
                assert_eq!(o.bbox, p.bbox);
                o.shape != p.shape
            })
            .count();
        assert_eq!(changed, 1, "scene {i}");
        pairs += 1;
    }
    assert_eq!(pairs, 180);
    let half = generate_scenes(&WorldConfig {
        minimal_pairs: 0.5,
        ..plain
    });
    let paired = half.iter().zip(&a).filter(|(h, p)| h != p).count();
    assert!((60..=120).contains(&paired), "{paired} of 180 paired");
}

#[test]
fn attribute_labels_name_each_objects_combinations_and_the_count() {
    let object = |shape, colour, size, column, row| Object {
        shape,
        colour,
        size,
        region: Region { column, row },
        bbox: [0.0; 4],
    };
    let scene = Scene {
        id: 0,
        image: String::new(),
        split: "train".into(),
        objects: vec![
            object(Shape::Star, Colour::Blue, Size::Large, 2, 0),
            object(Shape::Circle, Colour::White, Size::Small, 0, 2),
        ],
        background_seed: 0,
    };
    let labels = attribute_labels(&scene);
    assert_eq!(labels.len(), ATTRIBUTE_LABELS);
    let on: Vec<usize> = (0..labels.len()).filter(|&i| labels[i] == 1.0).collect();
    // (shape, colour): star = 4, blue = 2; circle = 0, white = 7.
    // (shape, size) from 56: star large = 56 + 9, circle small = 56.
    // (colour, region) from 70: blue top right = 70 + 18 + 2, white
    // bottom left = 70 + 63 + 6. Count two: 142 + 1.
    assert_eq!(on, vec![7, 34, 56, 65, 90, 139, 143]);
    assert!(labels.iter().all(|&l| l == 0.0 || l == 1.0));
}
