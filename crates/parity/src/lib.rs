//! Parity of our models with their PyTorch reference, on fixtures written by
//! the reference libraries themselves.
//!
//! A fixture directory holds `config.json`, `model.safetensors` (weights in
//! the reference naming) and `io.safetensors` (inputs and the outputs the
//! reference computed). [`check_dir`] loads the weights through the real
//! loaders of `vl-models`, recomputes every output present and reports the
//! maximum absolute error of each. This is the code path of both
//! `cargo xtask parity DIR` and the CI tests; see `docs/parity.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde_json::Value;
use vl_models::TextInput;
use vl_models::blocks::padding_mask;
use vl_models::import::{self, ImportError, TensorMap};

mod albef;
mod kind;

pub use kind::ModelKind;

/// Why a parity check could not run.
#[derive(Debug, thiserror::Error)]
pub enum ParityError {
    /// The fixture is incomplete or malformed.
    #[error("{path}: {message}")]
    Fixture {
        /// File or directory at fault.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A fixture file could not be read.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A fixture's JSON is malformed.
    #[error("{path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The weights (or the inputs and outputs) did not load.
    #[error("loading {path}")]
    Import {
        /// The file.
        path: PathBuf,
        /// The loader's error.
        #[source]
        source: ImportError,
    },
}

/// The comparison of one output.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputCheck {
    /// Output name in `io.safetensors`.
    pub name: String,
    /// Expected shape.
    pub expected_shape: Vec<usize>,
    /// Our shape, or `None` if we have no such output.
    pub actual_shape: Option<Vec<usize>>,
    /// Maximum absolute error (when the shapes match).
    pub max_abs_error: Option<f32>,
}

impl OutputCheck {
    /// Whether this output is within `tolerance`.
    pub fn passes(&self, tolerance: f32) -> bool {
        self.actual_shape.as_ref() == Some(&self.expected_shape)
            && self.max_abs_error.is_some_and(|e| e <= tolerance)
    }
}

/// The result of [`check_dir`].
#[derive(Debug, Clone)]
pub struct ParityReport {
    /// Fixture directory.
    pub dir: PathBuf,
    /// What kind of model it held.
    pub model: ModelKind,
    /// One entry per expected output, in name order.
    pub outputs: Vec<OutputCheck>,
    /// Tolerance the report is judged against.
    pub tolerance: f32,
}

impl ParityReport {
    /// Whether every output is within tolerance and shaped as expected.
    pub fn passed(&self) -> bool {
        !self.outputs.is_empty() && self.outputs.iter().all(|o| o.passes(self.tolerance))
    }

    /// The largest error over all outputs.
    pub fn max_abs_error(&self) -> f32 {
        self.outputs
            .iter()
            .filter_map(|o| o.max_abs_error)
            .fold(0.0, f32::max)
    }
}

impl fmt::Display for ParityReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} ({:?}), tolerance {:e}",
            self.dir.display(),
            self.model,
            self.tolerance
        )?;
        for o in &self.outputs {
            let status = if o.passes(self.tolerance) {
                "ok  "
            } else {
                "FAIL"
            };
            match (&o.actual_shape, o.max_abs_error) {
                (Some(shape), Some(err)) => writeln!(
                    f,
                    "  {status} {:<30} {:<18} max abs error {err:.3e}",
                    o.name,
                    format!("{shape:?}")
                )?,
                (Some(shape), None) => writeln!(
                    f,
                    "  {status} {:<30} shape {shape:?}, expected {:?}",
                    o.name, o.expected_shape
                )?,
                (None, _) => writeln!(f, "  {status} {:<30} not computed by our model", o.name)?,
            }
        }
        write!(
            f,
            "  {}: max abs error {:.3e} over {} outputs",
            if self.passed() { "PASS" } else { "FAIL" },
            self.max_abs_error(),
            self.outputs.len()
        )
    }
}

/// Checks the fixture in `dir` on `device`.
pub fn check_dir(dir: &Path, tolerance: f32, device: &Device) -> Result<ParityReport, ParityError> {
    let fixture_err = |path: PathBuf, message: String| ParityError::Fixture { path, message };
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(|source| ParityError::Io {
        path: config_path.clone(),
        source,
    })?;
    let config: Value = parse(&config_path, &config_text)?;
    let model = ModelKind::from_config(&config).ok_or_else(|| {
        fixture_err(
            config_path.clone(),
            "neither an ALBEF config (bert_config, with an optional \"task\": \"ve\", \"grounding\" or \"vqa\") nor an HF model_type among bert, vit, xlm-roberta, clip, altclip"
                .into(),
        )
    })?;
    let io_path = dir.join("io.safetensors");
    let io = TensorMap::read_safetensors(&io_path).map_err(|source| ParityError::Import {
        path: io_path.clone(),
        source,
    })?;
    for name in io.names() {
        if !model.inputs().contains(&name) && !model.outputs().contains(&name) {
            return Err(fixture_err(
                io_path,
                format!("`{name}` is neither an input nor an output of {model:?}"),
            ));
        }
    }

    let weights = dir.join("model.safetensors");
    let tensors = TensorMap::read_safetensors(&weights).map_err(|e| ParityError::Import {
        path: weights.clone(),
        source: e,
    })?;
    let inputs = Inputs { io: &io, device };
    let import_err = |source| ParityError::Import {
        path: weights.clone(),
        source,
    };
    let computed = match model {
        ModelKind::Bert | ModelKind::XlmRoberta => {
            let config = parse(&config_path, &config_text)?;
            let (bert, _) = import::bert::load_bert(config, tensors, device).map_err(import_err)?;
            let out = bert.forward(&inputs.text()?, None);
            let mut computed = outputs([("last_hidden_state", out.last_hidden_state)]);
            if let Some(pooled) = out.pooler_output {
                computed.insert("pooler_output", pooled.into_data());
            }
            computed
        }
        ModelKind::BertMaskedLm => {
            let config = parse(&config_path, &config_text)?;
            let (mlm, _) =
                import::bert::load_bert_masked_lm(config, tensors, device).map_err(import_err)?;
            let hidden = mlm.bert.forward(&inputs.text()?, None).last_hidden_state;
            let logits = mlm.mlm_logits(hidden.clone());
            outputs([("last_hidden_state", hidden)])
                .into_iter()
                .chain([("logits", logits.into_data())])
                .collect()
        }
        ModelKind::Vit => {
            let config = parse(&config_path, &config_text)?;
            let (vit, _) = import::vit::load_vit(config, tensors, device).map_err(import_err)?;
            let hidden = vit.forward(inputs.float::<4>("pixel_values")?);
            let mut computed = outputs([("last_hidden_state", hidden.clone())]);
            if let Some(pooled) = vit.pool(hidden) {
                computed.insert("pooler_output", pooled.into_data());
            }
            computed
        }
        ModelKind::Clip => {
            let config = parse(&config_path, &config_text)?;
            let (clip, _) =
                import::clip::load_clip(&config, tensors, device).map_err(import_err)?;
            let (ids, padding) = (inputs.int("input_ids")?, inputs.padding()?);
            let text = clip.text_model.forward(ids, padding);
            let vision = clip
                .vision_model
                .forward(inputs.float::<4>("pixel_values")?);
            let text_features = clip.text_projection.forward(text.pooler_output.clone());
            let image_features = clip.visual_projection.forward(vision.pooler_output.clone());
            contrastive_outputs(
                text,
                vision,
                text_features,
                image_features,
                clip.logit_scale.val(),
            )
        }
        ModelKind::AltClip => {
            let mut config: vl_models::AltClipConfig = parse(&config_path, &config_text)?;
            config.text_config.roberta.model_type = vl_models::bert::BertFamily::Roberta;
            let (alt, _) =
                import::clip::load_altclip(&config, tensors, device).map_err(import_err)?;
            let text = alt.text_model.forward(&inputs.text()?);
            let vision = alt.vision_model.forward(inputs.float::<4>("pixel_values")?);
            let text_features = alt.text_projection.forward(text.pooler_output.clone());
            let image_features = alt.visual_projection.forward(vision.pooler_output.clone());
            let tower = vl_models::clip::TowerOutput {
                last_hidden_state: text.last_hidden_state,
                pooler_output: text.pooler_output,
            };
            let mut computed = contrastive_outputs(
                tower,
                vision,
                text_features,
                image_features,
                alt.logit_scale.val(),
            );
            computed.insert(
                "roberta_last_hidden_state",
                text.roberta_last_hidden_state.into_data(),
            );
            computed
        }
        ModelKind::Albef => {
            let config: vl_models::AlbefConfig = parse(&config_path, &config_text)?;
            let checkpoint =
                import::albef::load_albef(&config, tensors, device).map_err(import_err)?;
            albef::albef_outputs(&checkpoint.model, &inputs)?
        }
        ModelKind::AlbefVe => {
            let config: vl_models::AlbefConfig = parse(&config_path, &config_text)?;
            let checkpoint =
                import::albef_ve::load_albef_ve(&config, tensors, device).map_err(import_err)?;
            let logits = checkpoint
                .model
                .logits(inputs.float::<4>("image")?, &inputs.text()?);
            outputs([("ve_logits", logits)])
        }
        ModelKind::AlbefVqa => {
            let config: vl_models::AlbefConfig = parse(&config_path, &config_text)?;
            let k = serde_json::from_str::<Value>(&config_text)
                .ok()
                .and_then(|c| c["k_test"].as_u64())
                .filter(|&k| k > 0)
                .ok_or_else(|| {
                    fixture_err(
                        config_path.clone(),
                        "\"task\": \"vqa\" needs a positive integer \"k_test\"".into(),
                    )
                })? as usize;
            let checkpoint =
                import::albef_vqa::load_albef_vqa(&config, tensors, device).map_err(import_err)?;
            albef::vqa_outputs(&checkpoint.model, &inputs, k)?
        }
        ModelKind::AlbefGrounding => {
            let config: vl_models::AlbefConfig = parse(&config_path, &config_text)?;
            let layer = serde_json::from_str::<Value>(&config_text)
                .ok()
                .and_then(|c| c["gradcam_layer"].as_u64())
                .ok_or_else(|| {
                    fixture_err(
                        config_path.clone(),
                        "\"task\": \"grounding\" needs an integer \"gradcam_layer\"".into(),
                    )
                })? as usize;
            let fusion = config.bert_config.fusion_layer.unwrap_or(0);
            let layers = config.bert_config.num_hidden_layers;
            if !(fusion..layers).contains(&layer) {
                return Err(fixture_err(
                    config_path.clone(),
                    format!("gradcam_layer {layer} is not a fusion layer ({fusion}..{layers})"),
                ));
            }
            let checkpoint =
                import::albef::load_albef(&config, tensors, device).map_err(import_err)?;
            let model = checkpoint.model.valid();
            let mut computed = albef::albef_outputs(&model, &inputs)?;
            let cam = model.grad_cam(inputs.float::<4>("image")?, &inputs.text()?, layer, device);
            computed.insert("gradcam", cam.maps.into_data());
            computed
        }
    };

    let mut checks = Vec::new();
    for name in model.outputs() {
        let Some(expected) = io.get(name) else {
            continue;
        };
        checks.push(compare(name, expected, computed.get(name)));
    }
    Ok(ParityReport {
        dir: dir.to_owned(),
        model,
        outputs: checks,
        tolerance,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path, text: &str) -> Result<T, ParityError> {
    serde_json::from_str(text).map_err(|source| ParityError::Json {
        path: path.to_owned(),
        source,
    })
}

pub(crate) type Computed = BTreeMap<&'static str, TensorData>;

pub(crate) fn outputs<const D: usize, const N: usize>(
    pairs: [(&'static str, Tensor<D>); N],
) -> Computed {
    pairs.into_iter().map(|(k, v)| (k, v.into_data())).collect()
}

fn contrastive_outputs(
    text: vl_models::clip::TowerOutput,
    vision: vl_models::clip::TowerOutput,
    text_features: Tensor<2>,
    image_features: Tensor<2>,
    logit_scale: Tensor<1>,
) -> Computed {
    let joint = vl_models::clip::contrastive_logits(
        text_features.clone(),
        image_features.clone(),
        logit_scale,
    );
    let mut computed = outputs([
        ("text_last_hidden_state", text.last_hidden_state),
        ("vision_last_hidden_state", vision.last_hidden_state),
    ]);
    computed.extend(outputs([
        ("text_pooler_output", text.pooler_output),
        ("vision_pooler_output", vision.pooler_output),
        ("text_features", text_features),
        ("image_features", image_features),
        ("text_embeds", joint.text_embeds),
        ("image_embeds", joint.image_embeds),
        ("logits_per_image", joint.logits_per_image),
        ("logits_per_text", joint.logits_per_text),
    ]));
    computed
}

fn compare(name: &str, expected: &TensorData, actual: Option<&TensorData>) -> OutputCheck {
    let expected_shape = expected.shape().to_vec();
    let Some(actual) = actual else {
        return OutputCheck {
            name: name.to_owned(),
            expected_shape,
            actual_shape: None,
            max_abs_error: None,
        };
    };
    let actual_shape = actual.shape().to_vec();
    let max_abs_error = (actual_shape == expected_shape).then(|| {
        let e = expected.clone().convert::<f32>();
        let a = actual.clone().convert::<f32>();
        e.as_slice::<f32>()
            .expect("f32")
            .iter()
            .zip(a.as_slice::<f32>().expect("f32"))
            .map(|(x, y)| {
                if x.is_nan() || y.is_nan() {
                    f32::INFINITY
                } else {
                    (x - y).abs()
                }
            })
            .fold(0.0, f32::max)
    });
    OutputCheck {
        name: name.to_owned(),
        expected_shape,
        actual_shape: Some(actual_shape),
        max_abs_error,
    }
}

/// Typed access to the inputs of `io.safetensors`.
pub(crate) struct Inputs<'a> {
    pub(crate) io: &'a TensorMap,
    pub(crate) device: &'a Device,
}

impl Inputs<'_> {
    pub(crate) fn get(&self, name: &str) -> Result<TensorData, ParityError> {
        self.io
            .get(name)
            .cloned()
            .ok_or_else(|| ParityError::Fixture {
                path: PathBuf::from("io.safetensors"),
                message: format!("input `{name}` is missing"),
            })
    }

    pub(crate) fn int(&self, name: &str) -> Result<Tensor<2, Int>, ParityError> {
        Ok(Tensor::from_data(
            self.get(name)?.convert::<i64>(),
            self.device,
        ))
    }

    pub(crate) fn float<const D: usize>(&self, name: &str) -> Result<Tensor<D>, ParityError> {
        Ok(Tensor::from_data(
            self.get(name)?.convert::<f32>(),
            self.device,
        ))
    }

    pub(crate) fn padding(&self) -> Result<Option<Tensor<2, Bool>>, ParityError> {
        if !self.io.contains("attention_mask") {
            return Ok(None);
        }
        Ok(Some(padding_mask(self.int("attention_mask")?)))
    }

    pub(crate) fn text(&self) -> Result<TextInput, ParityError> {
        let mut text = TextInput::new(self.int("input_ids")?);
        text.padding = self.padding()?;
        if self.io.contains("token_type_ids") {
            text.token_type_ids = Some(self.int("token_type_ids")?);
        }
        Ok(text)
    }
}
