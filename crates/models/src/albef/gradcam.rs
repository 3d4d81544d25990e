//! Grad-CAM (Selvaraju et al. 2017) of ALBEF's image–text matching score on
//! the cross-attention of one fusion layer: how ALBEF grounds a referring
//! expression without ever seeing a box (Li et al. 2021, section 6;
//! salesforce/ALBEF `Grounding.py`, `--gradcam_mode itm`).
//!
//! The sum over the batch of the match logit (class 1) is differentiated
//! with respect to the layer's post-softmax cross-attention probabilities
//! `[batch, heads, text, 1 + patches]`. The map is the probabilities times
//! their gradient clamped at 0, the image `[CLS]` column dropped, text
//! padding zeroed, averaged over heads and then over text positions
//! (padding included in the count, as the reference's `mean`):
//! `[batch, g, g]` with `g = image_res / patch_size`, before any
//! upsampling. The probabilities come from burn's autodiff through a leaf
//! the layer computes from ([`crate::blocks::Attention::forward_probed`]),
//! not from a second model.

use burn::tensor::{Device, Tensor};

use super::{Albef, image_context};
use crate::bert::TextInput;
use crate::blocks::AttentionMask;

/// The match logits of (image, text) pairs and their Grad-CAM maps.
#[derive(Debug, Clone)]
pub struct GradCam {
    /// `[batch, 2]` ITM logits (class 1 = match), plain device.
    pub itm_logits: Tensor<2>,
    /// `[batch, g, g]` maps over the image patches, plain device.
    pub maps: Tensor<3>,
}

impl Albef {
    /// Grad-CAM of the match logit on the cross-attention of BERT layer
    /// `layer` (an index among all layers, as the reference's
    /// `block_num`), for `image` `[batch, 3, res, res]` and `text`; computed
    /// on `device` (plain; the backward runs on its autodiff twin). The
    /// model's dropout should be off (`valid()`).
    ///
    /// # Panics
    /// If `layer` is not a fusion layer.
    pub fn grad_cam(
        &self,
        image: Tensor<4>,
        text: &TextInput,
        layer: usize,
        device: &Device,
    ) -> GradCam {
        let bert = &self.text_encoder.bert;
        let layers = bert.encoder.layer.len();
        assert!(
            (bert.text_layers..layers).contains(&layer),
            "gradcam layer {layer} is not a fusion layer ({}..{layers})",
            bert.text_layers
        );
        let image_embeds = self.image_embeds(image);
        let patches = image_embeds.dims()[1] - 1;
        let side = (patches as f64).sqrt().round() as usize;
        let cross = image_context(image_embeds);
        let mask = AttentionMask {
            key_padding: text.padding.clone(),
            causal: false,
        };
        let mut x = self.text_embeds(text);
        let mut probs = None;
        for (i, block) in bert.encoder.layer.iter().enumerate().skip(bert.text_layers) {
            x = match i == layer {
                true => {
                    let (out, p) = block.forward_probed(x, &mask, &cross);
                    probs = Some(p);
                    out
                }
                false => block.forward(x, &mask, Some(&cross)),
            };
        }
        let probs = probs.expect("the probed layer ran");
        let logits = self.itm_logits(x);
        let [batch, _] = logits.dims();
        let grads = logits.clone().slice([0..batch, 1..2]).sum().backward();
        let grad = probs
            .grad(&grads)
            .expect("the match logit depends on the probed attention");
        let probs = probs.without_autodiff();
        let [_, _, length, keys] = probs.dims();
        let kept = |t: Tensor<4>| t.slice([0..batch, 0..probs.dims()[1], 0..length, 1..keys]);
        let text_mask = match &text.padding {
            Some(padding) => padding.clone().bool_not().float(),
            None => Tensor::ones([batch, length], device),
        };
        let maps = kept(probs.clone())
            * kept(grad).clamp_min(0.0)
            * text_mask.reshape([batch, 1, length, 1]);
        GradCam {
            itm_logits: logits.without_autodiff(),
            maps: maps.mean_dim(1).mean_dim(2).reshape([batch, side, side]),
        }
    }
}
