//! The one path from images to a model's input: decoded RGB images,
//! transformed (for training or evaluation), normalised with CLIP's mean
//! and standard deviation into a typed batch that knows its shape and
//! becomes a tensor with one upload.

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use image::RgbImage;
use rayon::prelude::*;

use crate::DataError;
use crate::loader::load_rgb;
use crate::transforms::{eval_transform, to_normalized_chw};

/// Normalised square images `[len, 3, side, side]`, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ImageBatch {
    values: Vec<f32>,
    side: usize,
}

impl ImageBatch {
    /// An empty batch of `side`-pixel images.
    pub fn new(side: usize) -> Self {
        Self {
            values: Vec::new(),
            side,
        }
    }

    /// A batch of already normalised values, `[len, 3, side, side]`.
    ///
    /// # Panics
    /// If the values are not a whole number of images.
    pub fn from_values(values: Vec<f32>, side: usize) -> Self {
        let per = 3 * side * side;
        assert!(
            per > 0 && values.len().is_multiple_of(per),
            "{} values are not whole {side}-px images",
            values.len()
        );
        Self { values, side }
    }

    /// `images` (already transformed to `side` pixels), normalised.
    pub fn from_images(images: &[RgbImage], side: usize) -> Self {
        let mut batch = Self::new(side);
        batch.values.reserve(images.len() * batch.per_image());
        for image in images {
            batch.push(image);
        }
        batch
    }

    /// Appends one image (already transformed to the batch's side).
    ///
    /// # Panics
    /// If the image is not `side` × `side`.
    pub fn push(&mut self, image: &RgbImage) {
        assert_eq!(
            image.dimensions(),
            (self.side as u32, self.side as u32),
            "an image of another size"
        );
        to_normalized_chw(image, &mut self.values);
    }

    /// Appends every image of `other`.
    ///
    /// # Panics
    /// If its side differs.
    pub fn extend(&mut self, other: &ImageBatch) {
        assert_eq!(self.side, other.side, "images of another size");
        self.values.extend_from_slice(&other.values);
    }

    fn per_image(&self) -> usize {
        3 * self.side * self.side
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        match self.per_image() {
            0 => 0,
            per => self.values.len() / per,
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Image side in pixels.
    pub fn side(&self) -> usize {
        self.side
    }

    /// The normalised values, `[len, 3, side, side]` row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The values of image `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let per = self.per_image();
        &self.values[i * per..(i + 1) * per]
    }

    /// The images at `rows`, in that order.
    pub fn select(&self, rows: &[usize]) -> ImageBatch {
        ImageBatch {
            values: rows.iter().flat_map(|&r| self.image(r)).copied().collect(),
            side: self.side,
        }
    }

    /// Consecutive images `range`.
    pub fn rows(&self, range: std::ops::Range<usize>) -> ImageBatch {
        let per = self.per_image();
        ImageBatch {
            values: self.values[range.start * per..range.end * per].to_vec(),
            side: self.side,
        }
    }

    /// Batches of at most `size` images, in order.
    pub fn chunks(&self, size: usize) -> impl Iterator<Item = ImageBatch> + '_ {
        self.values
            .chunks(size.max(1) * self.per_image().max(1))
            .map(|values| ImageBatch {
                values: values.to_vec(),
                side: self.side,
            })
    }

    /// The batch as tensor data, `[len, 3, side, side]`.
    pub fn to_data(&self) -> TensorData {
        TensorData::new(self.values.clone(), [self.len(), 3, self.side, self.side])
    }

    /// The batch on `device`, in one upload.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(self.to_data(), device)
    }
}

/// Decodes the images at `paths` and transforms them for evaluation
/// (bicubic resize to `side`), in parallel: the evaluation input of every
/// job.
pub fn eval_images(paths: &[impl AsRef<Path> + Sync], side: u32) -> Result<ImageBatch, DataError> {
    let images: Vec<RgbImage> = paths
        .par_iter()
        .map(|path| Ok(eval_transform(&load_rgb(path.as_ref())?, side)))
        .collect::<Result<_, DataError>>()?;
    Ok(ImageBatch::from_images(&images, side as usize))
}

/// Decodes the images at `paths` and transforms them as CLIP evaluates
/// ([`clip_transform`](crate::transforms::clip_transform): shorter side to
/// `side`, centre crop), in parallel: the input of AltCLIP's towers.
pub fn clip_images(paths: &[impl AsRef<Path> + Sync], side: u32) -> Result<ImageBatch, DataError> {
    let images: Vec<RgbImage> = paths
        .par_iter()
        .map(|path| {
            Ok(crate::transforms::clip_transform(
                &load_rgb(path.as_ref())?,
                side,
            ))
        })
        .collect::<Result<_, DataError>>()?;
    Ok(ImageBatch::from_images(&images, side as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transforms::{CLIP_MEAN, CLIP_STD};

    #[test]
    fn clip_keeps_the_aspect_and_crops_the_centre() {
        use crate::transforms::{clip_transform, eval_transform};
        // Columns 0..6 of a 6×2 image, each a grey level of its own.
        let wide = RgbImage::from_fn(6, 2, |x, _| image::Rgb([40 * x as u8; 3]));
        let crop = clip_transform(&wide, 2);
        assert_eq!(crop.dimensions(), (2, 2));
        assert_eq!(
            (crop.get_pixel(0, 0)[0], crop.get_pixel(1, 1)[0]),
            (80, 120)
        );
        let tall = RgbImage::from_fn(2, 6, |_, y| image::Rgb([40 * y as u8; 3]));
        assert_eq!(clip_transform(&tall, 2).get_pixel(0, 0)[0], 80);
        let square = RgbImage::from_fn(8, 8, |x, y| image::Rgb([(x * 30 + y) as u8; 3]));
        assert_eq!(clip_transform(&square, 4), eval_transform(&square, 4));
    }

    #[test]
    fn a_batch_knows_its_shape_and_selects_whole_images() {
        let image = |v: u8| RgbImage::from_pixel(2, 2, image::Rgb([v, 0, 255]));
        let batch = ImageBatch::from_images(&[image(0), image(255), image(51)], 2);
        assert_eq!((batch.len(), batch.side()), (3, 2));
        // Channel-first, CLIP-normalised: image 1's red plane is (1 − mean) / std.
        let red = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0];
        assert!(batch.image(1)[..4].iter().all(|&v| (v - red).abs() < 1e-6));
        assert_eq!(batch.select(&[2, 0]).image(1), batch.image(0));
        assert_eq!(batch.rows(1..3).image(0), batch.image(1));
        let chunks: Vec<usize> = batch.chunks(2).map(|c| c.len()).collect();
        assert_eq!(chunks, [2, 1]);
        let tensor = batch.to_tensor(&Device::flex());
        assert_eq!(tensor.dims(), [3, 3, 2, 2]);
        assert_eq!(ImageBatch::new(2).len(), 0);
    }
}
