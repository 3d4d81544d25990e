//! Properties of the readers of users' files, on generated input: whatever
//! the bytes, the manifest reader and the image loader answer with entries
//! or an error naming the file, and never panic.

use std::path::Path;

use image::RgbImage;
use proptest::prelude::*;
use serde_json::{Value, json};
use vl_data::loader::{check_images, load_rgb};
use vl_data::manifest::read_captioned_images;
use vl_data::{BadEntries, DataError};

/// One manifest entry: an image that exists or not, captions of any JSON
/// shape, an optional id of any JSON shape, sometimes not an object.
fn entry() -> impl Strategy<Value = Value> {
    let image = prop_oneof![
        Just(json!("good.png")),
        Just(json!("missing.png")),
        Just(json!("")),
        Just(json!(7)),
        "[a-z./]{0,12}".prop_map(Value::from),
    ];
    let caption = prop_oneof![
        ".{0,40}".prop_map(Value::from),
        prop::collection::vec(".{0,20}", 0..4).prop_map(|c| json!(c)),
        Just(Value::Null),
        Just(json!(3.5)),
    ];
    let id = prop_oneof![
        Just(None),
        (0u32..5).prop_map(|i| Some(json!(i))),
        "[a-z]{1,3}".prop_map(|s| Some(json!(s))),
        Just(Some(json!({"nested": 1}))),
    ];
    prop_oneof![
        8 => (image, caption, id).prop_map(|(image, caption, id)| {
            let mut entry = json!({"image": image, "caption": caption});
            if let Some(id) = id {
                entry["image_id"] = id;
            }
            entry
        }),
        1 => Just(json!("a string, not an entry")),
        1 => Just(json!({"caption": "no image"})),
    ]
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    RgbImage::new(3, 3)
        .save(dir.path().join("good.png"))
        .unwrap();
    dir
}

fn names_the_manifest(err: &DataError, manifest: &Path) -> bool {
    err.to_string().starts_with(&manifest.display().to_string())
}

proptest! {
    #[test]
    fn any_bytes_as_a_manifest_give_entries_or_a_named_error(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let dir = setup();
        let manifest = dir.path().join("m.json");
        std::fs::write(&manifest, &bytes).unwrap();
        for bad in [BadEntries::Fail, BadEntries::Skip] {
            match read_captioned_images(&manifest, None, 30, bad) {
                Ok((entries, _)) => prop_assert!(entries.iter().all(|e| !e.captions.is_empty())),
                Err(err) => prop_assert!(names_the_manifest(&err, &manifest), "{err}"),
            }
        }
    }

    #[test]
    fn every_entry_is_kept_skipped_or_named(entries in prop::collection::vec(entry(), 0..12)) {
        let dir = setup();
        let manifest = dir.path().join("m.json");
        // One entry per line: entry `i` starts on line `i + 2`.
        let lines: Vec<String> = entries.iter().map(Value::to_string).collect();
        std::fs::write(&manifest, format!("[\n{}\n]\n", lines.join(",\n"))).unwrap();
        let skipping = read_captioned_images(&manifest, None, 30, BadEntries::Skip);
        let failing = read_captioned_images(&manifest, None, 30, BadEntries::Fail);
        match (skipping, failing) {
            (Ok((kept, skipped)), failing) => {
                prop_assert_eq!(kept.len() + skipped.count(), entries.len());
                for entry in &kept {
                    prop_assert!(entry.image.is_file());
                    prop_assert!(entry.captions.iter().all(|c| !c.trim().is_empty()));
                }
                match failing {
                    Ok((all, _)) => prop_assert_eq!(all.len(), entries.len()),
                    Err(err) => {
                        prop_assert!(skipped.count() > 0);
                        // The first skipped entry is the one that fails.
                        let first = &skipped.entries[0];
                        let location = first.split(": ").next().unwrap();
                        prop_assert!(err.to_string().starts_with(location), "{err} / {first}");
                    }
                }
            }
            (Err(err), Err(_)) => {
                prop_assert!(names_the_manifest(&err, &manifest), "{err}");
                prop_assert!(err.to_string().contains("no usable entries"), "{err}");
            }
            (Err(err), Ok(_)) => prop_assert!(false, "skipping failed where failing did not: {err}"),
        }
    }

    #[test]
    fn any_bytes_as_an_image_decode_or_give_a_named_error(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        std::fs::write(&path, &bytes).unwrap();
        if let Err(err) = load_rgb(&path) {
            prop_assert!(err.to_string().contains("x.png"), "{err}");
        }
    }

    #[test]
    fn a_damaged_png_decodes_or_gives_a_named_error(
        cut in 0usize..400,
        flips in prop::collection::vec((0usize..400, any::<u8>()), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        let mut image = RgbImage::new(9, 7);
        image.pixels_mut().enumerate().for_each(|(i, p)| p.0 = [i as u8, 3 * i as u8, 7]);
        image.save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        for (at, value) in flips {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(cut.min(bytes.len()));
        std::fs::write(&path, &bytes).unwrap();
        if let Err(err) = load_rgb(&path) {
            prop_assert!(err.to_string().contains("x.png"), "{err}");
        }
        let item = vl_data::CaptionedImage {
            image: path.clone(),
            captions: vec!["c".into()],
            image_id: 0,
            location: vl_data::Location { file: "m.json".into(), line: 2 },
        };
        if let Err(err) = check_images(vec![item], BadEntries::Fail) {
            prop_assert!(err.to_string().starts_with("m.json:2: "), "{err}");
        }
    }
}
