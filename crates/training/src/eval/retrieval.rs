//! Image–text retrieval evaluation as the ALBEF reference does it
//! (salesforce/ALBEF `Retrieval.py`, `evaluation` and `itm_eval`): every
//! query's `k_test` best candidates by contrastive similarity are re-scored
//! by the ITM head (the "match" logit); the rest keep −100. The ranking by
//! contrastive similarity alone is reported beside it: it shows what the
//! alignment learnt, whatever the state of the ITM head.

use std::path::PathBuf;

use burn::tensor::{Device, Int, Tensor};
use serde::{Deserialize, Serialize};
use vl_data::{RetrievalSet, TextTokenizer, eval_images};
use vl_models::blocks::padding_mask;
use vl_models::{Albef, TextInput};

use crate::TrainError;

/// Retrieval metrics under the reference's names, in percent.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalMetrics {
    /// Image → text recall@1.
    pub txt_r1: f64,
    /// Image → text recall@5.
    pub txt_r5: f64,
    /// Image → text recall@10.
    pub txt_r10: f64,
    /// Mean of the three.
    pub txt_r_mean: f64,
    /// Text → image recall@1.
    pub img_r1: f64,
    /// Text → image recall@5.
    pub img_r5: f64,
    /// Text → image recall@10.
    pub img_r10: f64,
    /// Mean of the three.
    pub img_r_mean: f64,
    /// Mean of both means.
    pub r_mean: f64,
}

impl RetrievalMetrics {
    /// The reference's `itm_eval`: the rank of an image query is the best
    /// rank among its captions; a text has one image.
    pub fn from_scores(i2t: &[Vec<f32>], t2i: &[Vec<f32>], set: &RetrievalSet) -> Self {
        let rank_of = |scores: &[f32], targets: &[usize]| -> usize {
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            targets
                .iter()
                .map(|t| order.iter().position(|o| o == t).expect("target in range"))
                .min()
                .expect("at least one target")
        };
        let image_ranks: Vec<usize> = i2t
            .iter()
            .enumerate()
            .map(|(i, s)| rank_of(s, &set.img2txt[i]))
            .collect();
        let text_ranks: Vec<usize> = t2i
            .iter()
            .enumerate()
            .map(|(t, s)| rank_of(s, &[set.txt2img[t]]))
            .collect();
        let recall = |ranks: &[usize], k: usize| {
            100.0 * ranks.iter().filter(|&&r| r < k).count() as f64 / ranks.len() as f64
        };
        let at = |ranks: &[usize]| [1, 5, 10].map(|k| recall(ranks, k));
        Self::from_recalls(at(&image_ranks), at(&text_ranks))
    }

    /// Expected R@K of a model that ranks at random.
    pub fn chance(set: &RetrievalSet) -> Self {
        let (ni, nt) = (set.images.len() as f64, set.texts.len() as f64);
        let per_image = nt / ni;
        // An image query hits if any of its captions lands in the top k.
        // With k at or past the number of texts every query hits.
        let txt = |k: f64| 100.0 * (1.0 - (1.0 - k / nt).max(0.0).powf(per_image)).min(1.0);
        let img = |k: f64| 100.0 * (k / ni).min(1.0);
        Self::from_recalls([1.0, 5.0, 10.0].map(txt), [1.0, 5.0, 10.0].map(img))
    }

    /// The metrics from R@1/5/10 in each direction, with the means.
    fn from_recalls(txt: [f64; 3], img: [f64; 3]) -> Self {
        let [txt_r1, txt_r5, txt_r10] = txt;
        let [img_r1, img_r5, img_r10] = img;
        let txt_r_mean = (txt_r1 + txt_r5 + txt_r10) / 3.0;
        let img_r_mean = (img_r1 + img_r5 + img_r10) / 3.0;
        Self {
            txt_r1,
            txt_r5,
            txt_r10,
            txt_r_mean,
            img_r1,
            img_r5,
            img_r10,
            img_r_mean,
            r_mean: (txt_r_mean + img_r_mean) / 2.0,
        }
    }
}

/// Both rankings of one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetrievalReport {
    /// ITC top-`k_test`, re-ranked by ITM (the reference's metric).
    pub reranked: RetrievalMetrics,
    /// ITC similarities alone.
    pub contrastive: RetrievalMetrics,
}

/// What the evaluation needs besides the model and the data.
#[derive(Debug, Clone)]
pub struct RetrievalEval {
    /// Image side.
    pub image_size: u32,
    /// Tokens per caption (`[CLS]` included).
    pub max_tokens: usize,
    /// Candidates re-ranked per query.
    pub k_test: usize,
    /// Images, texts or image–text pairs per forward pass.
    pub batch_size: usize,
}

/// Encoded texts and images of a retrieval set.
struct Encoded {
    text_embeds: Tensor<3>,
    /// Tokens of each text (its padding follows them).
    text_lengths: Vec<usize>,
    /// HF-style attention mask (rows are selected from it, then converted:
    /// burn-flex's `select` on Bool tensors returns U8 storage).
    text_mask: Tensor<2, Int>,
    image_embeds: Tensor<3>,
    /// `[images, texts]` cosine similarities.
    sims: Vec<Vec<f32>>,
}

/// The score matrices of one evaluation, as the reference's `evaluation`
/// returns them: ITM "match" logits for each query's `k_test` ITC
/// candidates and −100 elsewhere, beside the ITC similarities.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalScores {
    /// `[images][texts]`, re-ranked by ITM.
    pub i2t: Vec<Vec<f32>>,
    /// `[texts][images]`, re-ranked by ITM.
    pub t2i: Vec<Vec<f32>>,
    /// `[images][texts]` cosine similarities.
    pub i2t_itc: Vec<Vec<f32>>,
    /// `[texts][images]` cosine similarities.
    pub t2i_itc: Vec<Vec<f32>>,
}

impl RetrievalScores {
    /// Both rankings' metrics (the reference's `itm_eval`).
    pub fn report(&self, set: &RetrievalSet) -> RetrievalReport {
        RetrievalReport {
            reranked: RetrievalMetrics::from_scores(&self.i2t, &self.t2i, set),
            contrastive: RetrievalMetrics::from_scores(&self.i2t_itc, &self.t2i_itc, set),
        }
    }

    /// Each query's `depth` best candidates, best first, in both rankings:
    /// what a look at the misses needs, a small fraction of the matrices.
    pub fn rankings(&self, set: &RetrievalSet, depth: usize) -> Rankings {
        let best = |rows: &[Vec<f32>]| -> Vec<Vec<usize>> {
            rows.iter().map(|row| top_k(row, depth)).collect()
        };
        Rankings {
            images: set.images.clone(),
            texts: set.texts.clone(),
            txt2img: set.txt2img.clone(),
            i2t: best(&self.i2t),
            t2i: best(&self.t2i),
            i2t_itc: best(&self.i2t_itc),
            t2i_itc: best(&self.t2i_itc),
        }
    }
}

/// Each query's best candidates (indices into `texts` or `images`, best
/// first; ties keep index order, as [`RetrievalMetrics::from_scores`]
/// does), with the set they index: `rankings.json` beside
/// `eval_retrieval.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rankings {
    /// Image paths, as the evaluation read them.
    pub images: Vec<PathBuf>,
    /// Captions, flattened.
    pub texts: Vec<String>,
    /// Each text's image.
    pub txt2img: Vec<usize>,
    /// Per image, texts by ITM re-ranking.
    pub i2t: Vec<Vec<usize>>,
    /// Per text, images by ITM re-ranking.
    pub t2i: Vec<Vec<usize>>,
    /// Per image, texts by ITC similarity.
    pub i2t_itc: Vec<Vec<usize>>,
    /// Per text, images by ITC similarity.
    pub t2i_itc: Vec<Vec<usize>>,
}

/// Scores every image against every text: the re-ranked and the ITC
/// score matrices ([`RetrievalScores::report`] gives their metrics).
/// `model` must be an inference copy (`valid()`); `progress` is called with
/// `(done, total)` counts of the image–text pairs re-ranked by ITM.
pub fn evaluate_retrieval(
    model: &Albef,
    set: &RetrievalSet,
    tokenizer: &TextTokenizer,
    eval: &RetrievalEval,
    device: &Device,
    mut progress: impl FnMut(usize, usize),
) -> Result<RetrievalScores, TrainError> {
    let encoded = encode(model, set, tokenizer, eval, device)?;
    let (ni, nt) = (set.images.len(), set.texts.len());
    let k_i2t = eval.k_test.min(nt);
    let k_t2i = eval.k_test.min(ni);
    // Per-text similarity columns, for the text queries and the ITC ranking.
    let columns: Vec<Vec<f32>> = (0..nt)
        .map(|t| encoded.sims.iter().map(|row| row[t]).collect())
        .collect();
    // The (text, image) pairs to re-rank: each image query's candidate
    // texts, each text query's candidate images.
    let i2t_pairs: Vec<(usize, usize)> = (0..ni)
        .flat_map(|i| {
            let top = top_k(&encoded.sims[i], k_i2t);
            top.into_iter().map(move |t| (t, i))
        })
        .collect();
    let t2i_pairs: Vec<(usize, usize)> = (0..nt)
        .flat_map(|t| top_k(&columns[t], k_t2i).into_iter().map(move |i| (t, i)))
        .collect();
    let pairs = [i2t_pairs.as_slice(), t2i_pairs.as_slice()].concat();
    let scores = itm_scores(
        model,
        &encoded,
        &pairs,
        eval.batch_size,
        device,
        &mut progress,
    );
    let (i2t_scores, t2i_scores) = scores.split_at(i2t_pairs.len());
    let mut i2t = vec![vec![-100.0f32; nt]; ni];
    let mut t2i = vec![vec![-100.0f32; ni]; nt];
    for (&(t, i), &score) in i2t_pairs.iter().zip(i2t_scores) {
        i2t[i][t] = score;
    }
    for (&(t, i), &score) in t2i_pairs.iter().zip(t2i_scores) {
        t2i[t][i] = score;
    }
    Ok(RetrievalScores {
        i2t,
        t2i,
        i2t_itc: encoded.sims,
        t2i_itc: columns,
    })
}

fn encode(
    model: &Albef,
    set: &RetrievalSet,
    tokenizer: &TextTokenizer,
    eval: &RetrievalEval,
    device: &Device,
) -> Result<Encoded, TrainError> {
    // One padding length for every text, so their states concatenate.
    let refs: Vec<&str> = set.texts.iter().map(String::as_str).collect();
    let tokens = tokenizer.encode_batch(&refs, Some(eval.max_tokens))?;
    let (ids, mask) = tokens.to_tensors(device);
    let padding = padding_mask(mask.clone());
    let mut text_embeds = Vec::new();
    let mut text_feat = Vec::new();
    for start in (0..set.texts.len()).step_by(eval.batch_size) {
        let end = (start + eval.batch_size).min(set.texts.len());
        let text = TextInput::new(ids.clone().slice(start..end))
            .with_padding(padding.clone().slice(start..end));
        let embeds = model.text_embeds(&text);
        text_feat.push(model.text_feat(embeds.clone()));
        text_embeds.push(embeds);
    }
    let mut image_embeds = Vec::new();
    let mut image_feat = Vec::new();
    for paths in set.images.chunks(eval.batch_size) {
        let images = eval_images(paths, eval.image_size)?;
        let embeds = model.image_embeds(images.to_tensor(device));
        image_feat.push(model.image_feat(embeds.clone()));
        image_embeds.push(embeds);
    }
    let image_feat = Tensor::cat(image_feat, 0);
    let text_feat = Tensor::cat(text_feat, 0);
    let nt = set.texts.len();
    let flat = image_feat
        .matmul(text_feat.transpose())
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 similarities");
    Ok(Encoded {
        text_embeds: Tensor::cat(text_embeds, 0),
        text_lengths: tokens.lengths(),
        text_mask: mask,
        image_embeds: Tensor::cat(image_embeds, 0),
        sims: flat.chunks(nt).map(<[f32]>::to_vec).collect(),
    })
}

/// Indices of the `k` largest values, best first.
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[b].total_cmp(&values[a]));
    order.truncate(k);
    order
}

/// ITM "match" logits of `(text, image)` pairs, in their order. The pairs
/// are fused `batch` at a time in order of caption length, each call's
/// captions padded only to their own longest; `progress` is called with
/// `(done, total)` pair counts.
fn itm_scores(
    model: &Albef,
    encoded: &Encoded,
    pairs: &[(usize, usize)],
    batch: usize,
    device: &Device,
    progress: &mut impl FnMut(usize, usize),
) -> Vec<f32> {
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by_key(|&n| encoded.text_lengths[pairs[n].0]);
    let index = |v: Vec<usize>| {
        let v: Vec<i64> = v.into_iter().map(|i| i as i64).collect();
        Tensor::<1, Int>::from_data(v.as_slice(), device)
    };
    let mut scores = vec![0.0f32; pairs.len()];
    let mut done = 0;
    for chunk in order.chunks(batch.max(1)) {
        let len = chunk
            .iter()
            .map(|&n| encoded.text_lengths[pairs[n].0])
            .max()
            .unwrap_or(0);
        let t = index(chunk.iter().map(|&n| pairs[n].0).collect());
        let i = index(chunk.iter().map(|&n| pairs[n].1).collect());
        let rows = chunk.len();
        let text_embeds = encoded.text_embeds.clone().select(0, t.clone());
        let text_mask = encoded.text_mask.clone().select(0, t);
        let fused = model.fusion(
            text_embeds.slice([0..rows, 0..len]),
            Some(padding_mask(text_mask.slice([0..rows, 0..len]))),
            encoded.image_embeds.clone().select(0, i),
        );
        let matched = model
            .itm_logits(fused)
            .slice([0..rows, 1..2])
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 scores");
        for (&n, score) in chunk.iter().zip(matched) {
            scores[n] = score;
        }
        done += chunk.len();
        progress(done, pairs.len());
    }
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chance_is_a_percentage_even_for_one_image() {
        // One image with one caption: every ranking is right.
        let set = RetrievalSet {
            images: vec!["a".into()],
            texts: vec!["0".into()],
            img2txt: vec![vec![0]],
            txt2img: vec![0],
        };
        let chance = RetrievalMetrics::chance(&set);
        assert_eq!(
            (chance.txt_r1, chance.txt_r10, chance.img_r5),
            (100.0, 100.0, 100.0)
        );
        // Two images of three captions each: TR@5 covers every caption.
        let set = RetrievalSet {
            images: vec!["a".into(), "b".into()],
            texts: (0..6).map(|i| i.to_string()).collect(),
            img2txt: vec![vec![0, 1, 2], vec![3, 4, 5]],
            txt2img: vec![0, 0, 0, 1, 1, 1],
        };
        let chance = RetrievalMetrics::chance(&set);
        assert!((0.0..=100.0).contains(&chance.txt_r1) && chance.txt_r10 == 100.0);
    }

    #[test]
    fn metrics_follow_itm_eval() {
        // Two images with two captions each; image 0's best text is its own,
        // image 1 ranks a wrong text first; every text finds its image.
        let set = RetrievalSet {
            images: vec!["a".into(), "b".into()],
            texts: vec!["0".into(), "1".into(), "2".into(), "3".into()],
            img2txt: vec![vec![0, 1], vec![2, 3]],
            txt2img: vec![0, 0, 1, 1],
        };
        let i2t = vec![vec![0.9, 0.1, 0.2, 0.3], vec![0.9, 0.1, 0.5, 0.3]];
        let t2i = vec![
            vec![1.0, 0.0],
            vec![1.0, 0.0],
            vec![0.0, 1.0],
            vec![0.0, 1.0],
        ];
        let m = RetrievalMetrics::from_scores(&i2t, &t2i, &set);
        assert_eq!((m.txt_r1, m.txt_r5, m.img_r1), (50.0, 100.0, 100.0));
        assert!((m.r_mean - (250.0 / 3.0 + 100.0) / 2.0).abs() < 1e-9);

        // The rankings say the same: image 1's first text is image 0's.
        let scores = RetrievalScores {
            i2t: i2t.clone(),
            t2i: t2i.clone(),
            i2t_itc: i2t,
            t2i_itc: t2i,
        };
        let rankings = scores.rankings(&set, 3);
        assert_eq!(rankings.i2t, vec![vec![0, 3, 2], vec![0, 2, 3]]);
        assert_eq!(
            rankings.t2i,
            vec![vec![0, 1], vec![0, 1], vec![1, 0], vec![1, 0]]
        );
        assert_eq!(scores.report(&set).reranked, m);
    }
}
