//! Fashion-MNIST: 70 000 28 × 28 greyscale images of clothing in 10
//! classes (60 000 train, 10 000 test), from Zalando Research
//! (<https://github.com/zalandoresearch/fashion-mnist>; Xiao, Rasul and
//! Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
//! Learning Algorithms", 2017), as the Debian package `dataset-fashion-mnist`
//! installs it in [`DEBIAN_DIR`].
//!
//! The files are gzipped IDX, the format of LeCun's MNIST
//! (<http://yann.lecun.com/exdb/mnist/>): a big-endian `u32` magic number
//! `0x0000_08DD` (`08` = unsigned bytes, `DD` = number of dimensions), one
//! big-endian `u32` per dimension, then the data in row-major order. Images
//! are `0x00000803` (count × rows × cols, 0 = white background, 255 = ink),
//! labels `0x00000801` (count).
//!
//! Class names and caption templates in each [`Language`] serve both as the
//! CLIP teacher's training captions and as zero-shot prompts.

use std::io::Read;
use std::path::{Path, PathBuf};

use image::RgbImage;

use crate::DataError;
use crate::world::Language;

/// Where the Debian package `dataset-fashion-mnist` installs the files.
pub const DEBIAN_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// English class names in label order (Zalando's "T-shirt/top", "Trouser",
/// …, "Ankle boot", written as natural lower-case words).
pub const CLASSES: [&str; 10] = [
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
];

/// A split of the dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// 60 000 training images (`train-*`).
    Train,
    /// 10 000 test images (`t10k-*`).
    Test,
}

impl Split {
    /// The file-name prefix: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// One split of Fashion-MNIST in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FashionMnist {
    /// `len() × rows × cols` grey pixels, image after image, row-major.
    pub images: Vec<u8>,
    /// The label (0..10, an index into [`CLASSES`]) of each image.
    pub labels: Vec<u8>,
    /// Image height (28).
    pub rows: usize,
    /// Image width (28).
    pub cols: usize,
}

impl FashionMnist {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The grey pixels of image `i`.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn pixels(&self, i: usize) -> &[u8] {
        assert!(i < self.len(), "image {i} of {}", self.len());
        let size = self.rows * self.cols;
        &self.images[i * size..(i + 1) * size]
    }

    /// Image `i` with its grey value replicated to three channels, so the
    /// RGB transforms apply.
    ///
    /// # Panics
    ///
    /// If `i >= self.len()`.
    pub fn image(&self, i: usize) -> RgbImage {
        let rgb = self.pixels(i).iter().flat_map(|&g| [g, g, g]).collect();
        RgbImage::from_raw(self.cols as u32, self.rows as u32, rgb)
            .expect("rows × cols × 3 bytes fill the image")
    }
}

/// Reads one split from `dir`: `{train,t10k}-images-idx3-ubyte.gz` and
/// `{train,t10k}-labels-idx1-ubyte.gz`, or the same names without `.gz`
/// (uncompressed) where the gzipped file is absent.
///
/// Errors name the file: a missing or unreadable file, bad gzip data, a
/// wrong magic number, a size that disagrees with the dimensions, image
/// and label counts that disagree, or a label outside 0..10.
pub fn read_fashion_mnist(dir: &Path, split: Split) -> Result<FashionMnist, DataError> {
    let prefix = split.prefix();
    let (images_path, images_bytes) = read_maybe_gz(dir, &format!("{prefix}-images-idx3-ubyte"))?;
    let (labels_path, labels_bytes) = read_maybe_gz(dir, &format!("{prefix}-labels-idx1-ubyte"))?;
    let io = |path: &Path, message: String| DataError::Format {
        path: path.to_owned(),
        message,
    };

    let (dims, images) =
        parse_idx(&images_bytes, 3).map_err(|m| io(&images_path, format!("IDX images: {m}")))?;
    let (count, rows, cols) = (dims[0], dims[1], dims[2]);
    let (dims, labels) =
        parse_idx(&labels_bytes, 1).map_err(|m| io(&labels_path, format!("IDX labels: {m}")))?;
    if dims[0] != count {
        return Err(io(
            &labels_path,
            format!(
                "{} labels for {count} images in {}",
                dims[0],
                images_path.display()
            ),
        ));
    }
    if let Some((i, label)) = labels.iter().enumerate().find(|(_, l)| **l >= 10) {
        return Err(io(
            &labels_path,
            format!("label {label} of image {i} is not a class (0..10)"),
        ));
    }
    Ok(FashionMnist {
        images: images.to_vec(),
        labels: labels.to_vec(),
        rows,
        cols,
    })
}

/// Reads `dir/{name}.gz` gunzipped, or else `dir/{name}`.
fn read_maybe_gz(dir: &Path, name: &str) -> Result<(PathBuf, Vec<u8>), DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| DataError::Io { path, source }
    };
    if gz.is_file() {
        let file = std::fs::File::open(&gz).map_err(io(&gz))?;
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::io::BufReader::new(file))
            .read_to_end(&mut bytes)
            .map_err(|source| DataError::Gunzip {
                path: gz.clone(),
                source,
            })?;
        Ok((gz, bytes))
    } else if raw.is_file() {
        let bytes = std::fs::read(&raw).map_err(io(&raw))?;
        Ok((raw, bytes))
    } else {
        Err(DataError::Format {
            path: gz,
            message: format!(
                "not found (nor uncompressed {name}); is `dataset-fashion-mnist` installed?"
            ),
        })
    }
}

/// Parses an IDX file of unsigned bytes with `ndims` dimensions.
fn parse_idx(bytes: &[u8], ndims: usize) -> Result<(Vec<usize>, &[u8]), String> {
    let header = 4 * (1 + ndims);
    if bytes.len() < header {
        return Err(format!(
            "{} bytes is too short for the {header}-byte header",
            bytes.len()
        ));
    }
    let word = |i: usize| {
        u32::from_be_bytes([
            bytes[4 * i],
            bytes[4 * i + 1],
            bytes[4 * i + 2],
            bytes[4 * i + 3],
        ])
    };
    let magic = word(0);
    let expected = 0x0800 | ndims as u32;
    if magic != expected {
        return Err(format!(
            "magic number {magic:#010x}, expected {expected:#010x}"
        ));
    }
    let dims: Vec<usize> = (1..=ndims).map(|i| word(i) as usize).collect();
    let size = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("dimensions {dims:?} overflow"))?;
    let data = &bytes[header..];
    if data.len() != size {
        return Err(format!(
            "dimensions {dims:?} need {size} bytes of data, the file has {}",
            data.len()
        ));
    }
    Ok((dims, data))
}

/// Grammatical gender of a class noun (German and French articles).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gender {
    Masculine,
    Feminine,
    Neuter,
}

/// German names (capitalised nouns) and genders, in label order.
const GERMAN: [(&str, Gender); 10] = [
    ("T-Shirt", Gender::Neuter),
    ("Hose", Gender::Feminine),
    ("Pullover", Gender::Masculine),
    ("Kleid", Gender::Neuter),
    ("Mantel", Gender::Masculine),
    ("Sandale", Gender::Feminine),
    ("Hemd", Gender::Neuter),
    ("Sneaker", Gender::Masculine),
    ("Tasche", Gender::Feminine),
    ("Stiefelette", Gender::Feminine),
];

/// French names and genders, in label order.
const FRENCH: [(&str, Gender); 10] = [
    ("t-shirt", Gender::Masculine),
    ("pantalon", Gender::Masculine),
    ("pull", Gender::Masculine),
    ("robe", Gender::Feminine),
    ("manteau", Gender::Masculine),
    ("sandale", Gender::Feminine),
    ("chemise", Gender::Feminine),
    ("basket", Gender::Feminine),
    ("sac", Gender::Masculine),
    ("bottine", Gender::Feminine),
];

/// Chinese names, in label order.
const CHINESE: [&str; 10] = [
    "T恤",
    "裤子",
    "套头衫",
    "连衣裙",
    "外套",
    "凉鞋",
    "衬衫",
    "运动鞋",
    "包",
    "短靴",
];

fn check_label(label: usize) {
    assert!(
        label < CLASSES.len(),
        "label {label} is not a class (0..10)"
    );
}

/// The name of class `label` in `language`.
///
/// # Panics
///
/// If `label >= 10`.
pub fn class_name(language: Language, label: usize) -> &'static str {
    check_label(label);
    match language {
        Language::En => CLASSES[label],
        Language::Zh => CHINESE[label],
        Language::De => GERMAN[label].0,
        Language::Fr => FRENCH[label].0,
    }
}

/// Caption templates per language (the `template` argument of [`caption`]).
pub const TEMPLATES: usize = 4;

/// Caption `template` (0..[`TEMPLATES`]) of class `label` in `language`,
/// with the article agreeing with the noun. The same template index says
/// the same thing in every language:
///
/// | | en | zh |
/// |-|----|----|
/// | 0 | a photo of a {c} | 一张{c}的照片 |
/// | 1 | a black and white photo of a {c} | 一张{c}的黑白照片 |
/// | 2 | a picture of a {c} | 一张{c}的图片 |
/// | 3 | a low resolution photo of the {c} | 一张{c}的低分辨率照片 |
///
/// German (`ein Foto von einem/einer {c}`, …) and French
/// (`une photo d'un/d'une {c}`, …) follow the same pattern.
///
/// # Panics
///
/// If `label >= 10` or `template >= TEMPLATES`.
pub fn caption(language: Language, label: usize, template: usize) -> String {
    check_label(label);
    assert!(
        template < TEMPLATES,
        "template {template} out of range 0..{TEMPLATES}"
    );
    let c = class_name(language, label);
    match language {
        Language::En => {
            let a = if c.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            match template {
                0 => format!("a photo of {a} {c}"),
                1 => format!("a black and white photo of {a} {c}"),
                2 => format!("a picture of {a} {c}"),
                _ => format!("a low resolution photo of the {c}"),
            }
        }
        Language::Zh => match template {
            0 => format!("一张{c}的照片"),
            1 => format!("一张{c}的黑白照片"),
            2 => format!("一张{c}的图片"),
            _ => format!("一张{c}的低分辨率照片"),
        },
        Language::De => {
            // Dative after "von".
            let a = match GERMAN[label].1 {
                Gender::Feminine => "einer",
                Gender::Masculine | Gender::Neuter => "einem",
            };
            match template {
                0 => format!("ein Foto von {a} {c}"),
                1 => format!("ein Schwarzweißfoto von {a} {c}"),
                2 => format!("ein Bild von {a} {c}"),
                _ => format!("ein Foto in niedriger Auflösung von {a} {c}"),
            }
        }
        Language::Fr => {
            let a = match FRENCH[label].1 {
                Gender::Feminine => "d'une",
                Gender::Masculine | Gender::Neuter => "d'un",
            };
            match template {
                0 => format!("une photo {a} {c}"),
                1 => format!("une photo en noir et blanc {a} {c}"),
                2 => format!("une image {a} {c}"),
                _ => format!("une photo en basse résolution {a} {c}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn idx(magic: u32, dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut out = magic.to_be_bytes().to_vec();
        for d in dims {
            out.extend(d.to_be_bytes());
        }
        out.extend(data);
        out
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    /// Three 2 × 3 images with labels 0, 9, 4.
    fn write_tiny(dir: &Path, labels: &[u8], compress: bool) {
        let pixels: Vec<u8> = (0..18).collect();
        let images = idx(0x803, &[3, 2, 3], &pixels);
        let labels = idx(0x801, &[labels.len() as u32], labels);
        let (images, labels, ext) = if compress {
            (gz(&images), gz(&labels), ".gz")
        } else {
            (images, labels, "")
        };
        std::fs::write(dir.join(format!("t10k-images-idx3-ubyte{ext}")), images).unwrap();
        std::fs::write(dir.join(format!("t10k-labels-idx1-ubyte{ext}")), labels).unwrap();
    }

    #[test]
    fn reads_gzipped_and_plain_idx() {
        for compress in [true, false] {
            let scratch = self::dir();
            let dir = scratch.path();
            write_tiny(dir, &[0, 9, 4], compress);
            let data = read_fashion_mnist(dir, Split::Test).unwrap();
            assert_eq!((data.len(), data.rows, data.cols), (3, 2, 3));
            assert_eq!(data.labels, [0, 9, 4]);
            assert_eq!(data.pixels(1), [6, 7, 8, 9, 10, 11]);
            let image = data.image(2);
            assert_eq!(image.dimensions(), (3, 2));
            assert_eq!(image.get_pixel(1, 1).0, [16, 16, 16]);
        }
    }

    #[test]
    fn bad_files_are_errors_naming_the_file() {
        let scratch = self::dir();
        let dir = scratch.path();
        write_tiny(dir, &[0, 9], true);
        let err = read_fashion_mnist(dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("2 labels for 3 images"),
            "{err}"
        );

        let scratch = self::dir();
        let dir = scratch.path();
        write_tiny(dir, &[0, 10, 4], true);
        let err = read_fashion_mnist(dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label 10 of image 1"), "{err}");

        let scratch = self::dir();
        let dir = scratch.path();
        write_tiny(dir, &[0, 9, 4], true);
        let labels = idx(0x803, &[3], &[0, 9, 4]);
        std::fs::write(dir.join("t10k-labels-idx1-ubyte.gz"), gz(&labels)).unwrap();
        let err = read_fashion_mnist(dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-labels-idx1-ubyte.gz") && err.contains("magic number 0x00000803"),
            "{err}"
        );

        let scratch = self::dir();
        let dir = scratch.path();
        write_tiny(dir, &[0, 9, 4], false);
        let images = idx(0x803, &[3, 2, 3], &[0; 17]);
        std::fs::write(dir.join("t10k-images-idx3-ubyte"), images).unwrap();
        let err = read_fashion_mnist(dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("t10k-images-idx3-ubyte") && err.contains("need 18 bytes"),
            "{err}"
        );

        let scratch = self::dir();
        let dir = scratch.path();
        std::fs::write(dir.join("t10k-images-idx3-ubyte.gz"), b"not gzip").unwrap();
        let err = read_fashion_mnist(dir, Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("gunzip"), "{err}");

        let err = read_fashion_mnist(self::dir().path(), Split::Train)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("train-images-idx3-ubyte.gz") && err.contains("not found"),
            "{err}"
        );
    }

    #[test]
    fn captions_agree_with_their_nouns() {
        assert_eq!(caption(Language::En, 9, 0), "a photo of an ankle boot");
        assert_eq!(
            caption(Language::En, 0, 3),
            "a low resolution photo of the t-shirt"
        );
        assert_eq!(caption(Language::Zh, 2, 1), "一张套头衫的黑白照片");
        assert_eq!(caption(Language::De, 1, 2), "ein Bild von einer Hose");
        assert_eq!(caption(Language::De, 4, 0), "ein Foto von einem Mantel");
        assert_eq!(caption(Language::Fr, 3, 0), "une photo d'une robe");
        assert_eq!(caption(Language::Fr, 8, 2), "une image d'un sac");
        for language in Language::ALL {
            let mut all: Vec<String> = (0..10)
                .flat_map(|l| (0..TEMPLATES).map(move |t| caption(language, l, t)))
                .collect();
            all.sort();
            all.dedup();
            assert_eq!(
                all.len(),
                10 * TEMPLATES,
                "{language:?} captions are distinct"
            );
        }
    }

    #[test]
    #[ignore = "needs the extracted Debian package in /tmp/fm"]
    fn debian_package_files() {
        let dir = Path::new("/tmp/fm/root/usr/share/datasets/fashion-mnist");
        for (split, n) in [(Split::Train, 60_000), (Split::Test, 10_000)] {
            let data = read_fashion_mnist(dir, split).unwrap();
            assert_eq!((data.len(), data.rows, data.cols), (n, 28, 28));
            let mut histogram = [0usize; 10];
            for &l in &data.labels {
                histogram[l as usize] += 1;
            }
            assert_eq!(histogram, [n / 10; 10], "{split:?}");
            assert_eq!(data.image(0).dimensions(), (28, 28));
        }
    }
}
