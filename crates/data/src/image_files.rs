//! Reading users' image files: decoding to RGB, and a cheap check of every
//! image's header before a run starts.

use std::path::Path;

use image::RgbImage;
use rayon::prelude::*;

use crate::DataError;
use crate::manifest::{BadEntries, CaptionedImage, Skipped};

/// Decodes an image file to 8-bit RGB. The format is read from the file's
/// first bytes, not its name: NLVR2, for one, ships JPEGs named `.png`.
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    image::ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .decode()
        .map(|i| i.to_rgb8())
        .map_err(|source| DataError::Image {
            path: path.to_owned(),
            source,
        })
}

/// Reads the header (format and size, not the pixels) of every item's
/// image on every core, so that a missing, unreadable or unrecognisable
/// image stops a run before it starts rather than hours in. Under
/// [`BadEntries::Fail`] the first such image in manifest order is the
/// error; under [`BadEntries::Skip`] each is counted and left out. Damage
/// past the header is still found when the image is decoded for a batch.
pub fn check_images(
    items: Vec<CaptionedImage>,
    bad: BadEntries,
) -> Result<(Vec<CaptionedImage>, Skipped), DataError> {
    let bar = crate::progress::bar(items.len() as u64, "checking images");
    let problems: Vec<Option<DataError>> = items
        .par_iter()
        .map(|item| {
            let problem = read_header(&item.image).err();
            bar.inc(1);
            problem
        })
        .collect();
    bar.finish_and_clear();
    let mut skipped = Skipped::default();
    let mut kept = Vec::with_capacity(items.len());
    for (item, problem) in items.into_iter().zip(problems) {
        match (problem, bad) {
            (None, _) => kept.push(item),
            (Some(e), BadEntries::Fail) => {
                return Err(DataError::BadEntry {
                    location: item.location,
                    source: Box::new(e),
                });
            }
            (Some(e), BadEntries::Skip) => skipped.push(&item.location, &e),
        }
    }
    if skipped.count() > 0 {
        log::warn!("{} unreadable images skipped", skipped.count());
    }
    Ok((kept, skipped))
}

/// The dimensions in an image file's header (its format guessed from its
/// first bytes); an image with no pixels is unusable.
fn read_header(path: &Path) -> Result<(u32, u32), DataError> {
    let io = |source| DataError::Io {
        path: path.to_owned(),
        source,
    };
    let (width, height) = image::ImageReader::open(path)
        .map_err(io)?
        .with_guessed_format()
        .map_err(io)?
        .into_dimensions()
        .map_err(|source| DataError::Image {
            path: path.to_owned(),
            source,
        })?;
    if width == 0 || height == 0 {
        return Err(DataError::Format {
            path: path.to_owned(),
            message: format!("a {width}×{height} image has no pixels"),
        });
    }
    Ok((width, height))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::manifest::Location;

    #[test]
    fn unreadable_images_are_found_before_training() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.png");
        RgbImage::new(4, 4).save(&good).unwrap();
        let text = dir.path().join("text.png");
        std::fs::write(&text, "not an image").unwrap();
        let empty = dir.path().join("empty.png");
        std::fs::write(&empty, []).unwrap();
        let item = |image: PathBuf, line| CaptionedImage {
            image,
            captions: vec!["a caption".into()],
            image_id: line,
            location: Location {
                file: "m.json".into(),
                line,
            },
        };
        let items = vec![
            item(good.clone(), 1),
            item(text, 2),
            item(dir.path().join("missing.png"), 3),
            item(empty, 4),
            item(good, 5),
        ];
        let err = check_images(items.clone(), BadEntries::Fail).unwrap_err();
        assert!(err.to_string().starts_with("m.json:2: image "), "{err}");
        let (kept, skipped) = check_images(items, BadEntries::Skip).unwrap();
        assert_eq!(kept.iter().map(|i| i.image_id).collect::<Vec<_>>(), [1, 5]);
        assert_eq!(skipped.count(), 3);
        assert!(
            skipped.entries[1].starts_with("m.json:3: "),
            "{:?}",
            skipped.entries
        );
    }
}
