//! Strict loading of PyTorch checkpoints into the models of this crate.
//!
//! A load has three steps:
//! 1. [`TensorMap::read`] reads every tensor of a `.safetensors`, `.bin`,
//!    `.pt` or `.pth` file. PyTorch pickles are read by burn-store's
//!    unpickler, which interprets only tensor-rebuilding calls: loading a
//!    `.pth` never runs pickled code.
//! 2. A per-format table of [`KeyRule`]s renames checkpoint keys to our field
//!    paths (each model module documents its table). Format-specific fixes
//!    that a rename cannot express (timm's fused `qkv`, tied decoders, buffers
//!    to skip) happen in the per-model loaders before that.
//! 3. [`load_strict`] compares the renamed keys and shapes with the model's
//!    own parameters, in PyTorch layout, and reports every missing key,
//!    unexpected key and shape mismatch at once, by the checkpoint's name.
//!    Only then are the tensors applied (burn-store's `PyTorchToBurnAdapter`
//!    transposes `Linear` weights and maps LayerNorm `weight/bias` to
//!    `gamma/beta`).

pub mod albef;
pub mod albef_ve;
pub mod albef_vqa;
pub mod bert;
pub mod clip;
pub mod vit;

mod keys;
pub use keys::{KeyRule, prefixed, rule, to_checkpoint_key, to_model_key};

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::pytorch_reader::PytorchReader;
use burn::store::{
    BurnToPyTorchAdapter, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, SafetensorsStore,
    bridge,
};
use burn::tensor::{DType, TensorData};

/// Everything that can go wrong while importing a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read or written.
    #[error("{path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The tensor reader (safetensors or the PyTorch unpickler) rejected
    /// the file, or one of its tensors.
    #[error("reading {path}{}", tensor.as_ref().map(|t| format!(", tensor `{t}`")).unwrap_or_default())]
    Store {
        /// The file.
        path: PathBuf,
        /// The tensor at fault, when one is.
        tensor: Option<String>,
        /// What the reader said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A `config.json` is not valid JSON of the expected shape.
    #[error("config {path}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The path is not something this crate reads (no underlying error:
    /// an unknown extension, a directory without weights).
    #[error("{path}: {message}")]
    Format {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The checkpoint's keys or shapes do not match the model.
    #[error("{0}")]
    Mismatch(KeyProblems),
    /// The checkpoint is readable but cannot be represented by our model.
    #[error("{0}")]
    Unsupported(String),
}

impl ImportError {
    fn store(
        path: &Path,
        tensor: Option<&str>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        ImportError::Store {
            path: path.to_owned(),
            tensor: tensor.map(str::to_owned),
            source: Box::new(source),
        }
    }
}

/// One way a checkpoint disagrees with the model, named by checkpoint key.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyProblem {
    /// The model has this parameter; the checkpoint does not.
    Missing {
        /// Checkpoint key the parameter would have.
        key: String,
        /// Shape the model expects (PyTorch layout).
        expected: Vec<usize>,
    },
    /// The checkpoint has a tensor the model has no place for.
    Unexpected {
        /// Checkpoint key.
        key: String,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Both have it, with different shapes.
    Shape {
        /// Checkpoint key.
        key: String,
        /// Shape in the checkpoint.
        checkpoint: Vec<usize>,
        /// Shape the model expects (PyTorch layout).
        model: Vec<usize>,
    },
    /// A parameter stored as an integer or boolean tensor.
    DType {
        /// Checkpoint key.
        key: String,
        /// The stored type.
        dtype: String,
    },
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyProblem::Missing { key, expected } => {
                write!(
                    f,
                    "missing key `{key}` (the model expects shape {expected:?})"
                )
            }
            KeyProblem::Unexpected { key, shape } => {
                write!(f, "unexpected key `{key}` with shape {shape:?}")
            }
            KeyProblem::Shape {
                key,
                checkpoint,
                model,
            } => write!(
                f,
                "shape mismatch for `{key}`: {checkpoint:?} in the checkpoint, {model:?} in the model"
            ),
            KeyProblem::DType { key, dtype } => {
                write!(f, "`{key}` is stored as {dtype}, not as a float tensor")
            }
        }
    }
}

/// All problems found in one load, reported together.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyProblems(pub Vec<KeyProblem>);

impl fmt::Display for KeyProblems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the checkpoint does not match the model ({} problems)",
            self.0.len()
        )?;
        for problem in &self.0 {
            write!(f, "\n  {problem}")?;
        }
        Ok(())
    }
}

/// How strictly to treat checkpoint tensors the model does not use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strictness {
    /// Any unexpected key is an error (the default).
    #[default]
    Strict,
    /// Unexpected keys are listed in [`LoadReport::unexpected`] instead.
    /// Missing keys and shape mismatches are still errors.
    AllowUnexpected,
}

/// What a successful load did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Number of parameters loaded.
    pub loaded: usize,
    /// Checkpoint keys left out by the loader on purpose (heads of other
    /// tasks, buffers), with the reason.
    pub skipped: Vec<(String, &'static str)>,
    /// Unused keys accepted under [`Strictness::AllowUnexpected`].
    pub unexpected: Vec<String>,
}

/// The tensors of one checkpoint file, by name, in file layout.
#[derive(Debug, Clone, Default)]
pub struct TensorMap {
    tensors: BTreeMap<String, TensorData>,
}

impl TensorMap {
    /// Reads a `.safetensors` file, or a PyTorch `.bin`/`.pt`/`.pth` file.
    ///
    /// For PyTorch files whose root dict has a `"model"` entry (ALBEF and
    /// most training checkpoints) that entry is the state dict.
    pub fn read(path: &Path) -> Result<Self, ImportError> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("safetensors") => Self::read_safetensors(path),
            Some("bin" | "pt" | "pth") => Self::read_pytorch(path),
            Some("ckpt") => Err(ImportError::Format {
                path: path.to_owned(),
                message: "a training checkpoint of this project, not PyTorch or safetensors \
                          weights (continue its run with --resume, or start a task from it \
                          with --from)"
                    .into(),
            }),
            _ => Err(ImportError::Format {
                path: path.to_owned(),
                message: "unknown checkpoint format (expected .safetensors, .bin, .pt or .pth)"
                    .into(),
            }),
        }
    }

    /// Reads every tensor of a safetensors file.
    pub fn read_safetensors(path: &Path) -> Result<Self, ImportError> {
        if !path.is_file() {
            return Err(ImportError::Io {
                path: path.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let mut store = SafetensorsStore::from_file(path);
        let all = store
            .get_all_tensors()
            .map_err(|e| ImportError::store(path, None, e))?;
        let mut tensors = BTreeMap::new();
        for (name, tensor) in all {
            let data =
                bridge::to_data(tensor).map_err(|e| ImportError::store(path, Some(name), e))?;
            tensors.insert(name.clone(), data);
        }
        Ok(Self { tensors })
    }

    /// Reads a PyTorch pickle (zip or legacy format) without executing it.
    pub fn read_pytorch(path: &Path) -> Result<Self, ImportError> {
        let reader = match PytorchReader::with_top_level_key(path, "model") {
            Ok(reader) => reader,
            Err(_) => PytorchReader::new(path).map_err(|e| ImportError::store(path, None, e))?,
        };
        let mut tensors = BTreeMap::new();
        for (name, tensor) in reader.into_tensors() {
            let data = bridge::into_data(bridge::from_pytorch(tensor))
                .map_err(|e| ImportError::store(path, Some(&name), e))?;
            tensors.insert(name, data);
        }
        Ok(Self { tensors })
    }

    /// Builds a map from `(name, data)` pairs.
    pub fn from_entries(entries: impl IntoIterator<Item = (String, TensorData)>) -> Self {
        Self {
            tensors: entries.into_iter().collect(),
        }
    }

    /// Names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the map holds no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor stored under `name`.
    pub fn get(&self, name: &str) -> Option<&TensorData> {
        self.tensors.get(name)
    }

    /// Whether `name` is present.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Removes and returns the tensor stored under `name`.
    pub fn remove(&mut self, name: &str) -> Option<TensorData> {
        self.tensors.remove(name)
    }

    /// Stores a tensor, replacing any under the same name.
    pub fn insert(&mut self, name: impl Into<String>, data: TensorData) {
        self.tensors.insert(name.into(), data);
    }

    /// Whether any key starts with `prefix`.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        self.tensors.keys().any(|k| k.starts_with(prefix))
    }

    /// The momentum copies (`{part}_m.*` for each of `parts`) split off,
    /// renamed to the online names (`{part}.*`): the reference's `*_m`
    /// modules as a model of their own.
    pub fn split_off_momentum(&mut self, parts: &[&str]) -> TensorMap {
        let mut momentum = TensorMap::default();
        for part in parts {
            for (key, data) in self.split_off_prefix(&format!("{part}_m.")).into_entries() {
                momentum.insert(format!("{part}.{key}"), data);
            }
        }
        momentum
    }

    /// Removes every tensor whose key starts with `prefix` and returns them,
    /// with the prefix stripped.
    pub fn split_off_prefix(&mut self, prefix: &str) -> TensorMap {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        let mut taken = TensorMap::default();
        for name in names {
            let data = self.tensors.remove(&name).expect("listed above");
            taken.insert(&name[prefix.len()..], data);
        }
        taken
    }

    /// Renames every key that starts with `from` to start with `to` instead.
    pub fn replace_prefix(&mut self, from: &str, to: &str) {
        let names: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(from))
            .cloned()
            .collect();
        for name in names {
            let data = self.tensors.remove(&name).expect("listed above");
            self.tensors
                .insert(format!("{to}{}", &name[from.len()..]), data);
        }
    }

    /// Removes every key for which `skip` gives a reason, and returns them
    /// with that reason.
    pub fn skip_where(
        &mut self,
        skip: impl Fn(&str) -> Option<&'static str>,
    ) -> Vec<(String, &'static str)> {
        let names: Vec<(String, &'static str)> = self
            .tensors
            .keys()
            .filter_map(|k| skip(k).map(|reason| (k.clone(), reason)))
            .collect();
        for (name, _) in &names {
            self.tensors.remove(name);
        }
        names
    }

    /// Iterates over `(name, data)`.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &TensorData)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Consumes the map into its entries.
    pub fn into_entries(self) -> impl Iterator<Item = (String, TensorData)> {
        self.tensors.into_iter()
    }

    /// Writes the map as a safetensors file (floats as f32, integers as
    /// i64), through a temporary file renamed into place.
    pub fn write_safetensors(&self, path: &Path) -> Result<(), ImportError> {
        use safetensors::{Dtype, tensor::TensorView};
        let mut buffers = Vec::with_capacity(self.tensors.len());
        for (name, data) in &self.tensors {
            let (dtype, data) = if is_float(data.dtype()) {
                (Dtype::F32, data.clone().convert::<f32>())
            } else {
                (Dtype::I64, data.clone().convert::<i64>())
            };
            buffers.push((name, dtype, data.shape().to_vec(), data.into_bytes()));
        }
        let views = buffers
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes)
                    .map(|view| (name.as_str(), view))
                    .map_err(|e| ImportError::store(path, Some(name), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let temp = path.with_extension("safetensors.tmp");
        safetensors::serialize_to_file(views, None, &temp)
            .map_err(|e| ImportError::store(&temp, None, e))?;
        std::fs::rename(&temp, path).map_err(|source| ImportError::Io {
            path: path.to_owned(),
            source,
        })
    }
}

/// Skips the integer buffers that HF registers next to embeddings
/// (`position_ids`, `token_type_ids`): not parameters, and recomputed here.
pub fn skip_hf_buffers(key: &str) -> Option<&'static str> {
    (key.ends_with("embeddings.position_ids") || key.ends_with("embeddings.token_type_ids"))
        .then_some("index buffer, recomputed by the model")
}

/// The model's parameters in PyTorch naming and layout (`weight`/`bias` for
/// LayerNorms, `Linear` weights as `[out, in]`), by field path.
pub fn expected_shapes<M: Module>(model: &M) -> BTreeMap<String, Vec<usize>> {
    model
        .collect(None, Some(Box::new(BurnToPyTorchAdapter)), false)
        .into_iter()
        .map(|t| (t.name.clone(), t.shape.to_vec()))
        .collect()
}

/// Loads `tensors` (checkpoint naming) into `model`, renaming with `rules`.
///
/// Every model parameter must be present with the right shape; every
/// checkpoint tensor must be used unless `strictness` allows otherwise.
/// A 0-dim checkpoint scalar (ALBEF `temp`, CLIP `logit_scale`) loads into a
/// one-element parameter. Half-precision tensors are widened to f32.
pub fn load_strict<M: Module>(
    mut model: M,
    tensors: TensorMap,
    rules: &[KeyRule],
    strictness: Strictness,
) -> Result<(M, LoadReport), ImportError> {
    let expected = expected_shapes(&model);
    let mut problems = Vec::new();
    let mut report = LoadReport::default();
    let mut found = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for (key, data) in tensors.into_entries() {
        let path = to_model_key(rules, &key);
        let shape = data.shape().to_vec();
        seen.insert(path.clone());
        let Some(model_shape) = expected.get(&path) else {
            match strictness {
                Strictness::Strict => problems.push(KeyProblem::Unexpected { key, shape }),
                Strictness::AllowUnexpected => report.unexpected.push(key),
            }
            continue;
        };
        if !is_float(data.dtype()) {
            problems.push(KeyProblem::DType {
                key,
                dtype: format!("{:?}", data.dtype()),
            });
            continue;
        }
        let data = if shape.is_empty() && model_shape == &[1] {
            TensorData::new(
                data.convert::<f32>()
                    .try_into_vec::<f32>()
                    .expect("converted to f32"),
                [1],
            )
        } else if &shape != model_shape {
            problems.push(KeyProblem::Shape {
                key,
                checkpoint: shape,
                model: model_shape.clone(),
            });
            continue;
        } else {
            data.convert::<f32>()
        };
        found.insert(path, data);
    }
    for (path, shape) in &expected {
        if !seen.contains(path) {
            problems.push(KeyProblem::Missing {
                key: to_checkpoint_key(rules, path),
                expected: shape.clone(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ImportError::Mismatch(KeyProblems(problems)));
    }

    report.loaded = found.len();
    let snapshots = found
        .into_iter()
        .map(|(path, data)| bridge::from_data(data, path, None))
        .collect();
    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    // The checks above make these unreachable; keep them loud if they are not.
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(ImportError::Unsupported(format!(
            "burn-store rejected the checked tensors: {result}"
        )));
    }
    Ok((model, report))
}

fn is_float(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::F64 | DType::F32 | DType::F16 | DType::BF16 | DType::Flex32
    )
}

/// The model's parameters in PyTorch layout, named by the checkpoint keys
/// of `rules` (the inverse of [`load_strict`]'s renaming). A `[1]`
/// parameter listed in `scalars` (by checkpoint key) is written 0-dim, as
/// PyTorch stores it.
pub fn export_tensors<M: Module>(
    model: &M,
    rules: &[KeyRule],
    scalars: &[&str],
) -> Result<TensorMap, ImportError> {
    let mut map = TensorMap::default();
    for snapshot in model.collect(None, Some(Box::new(BurnToPyTorchAdapter)), false) {
        let key = to_checkpoint_key(rules, &snapshot.name);
        let data = bridge::into_data(snapshot)
            .map_err(|e| ImportError::Unsupported(format!("{key}: {e}")))?;
        let data = if scalars.contains(&key.as_str()) && data.shape().to_vec() == [1] {
            let value = data.convert::<f32>().try_into_vec::<f32>().expect("f32");
            TensorData::new(value, Vec::<usize>::new())
        } else {
            data
        };
        map.insert(key, data);
    }
    Ok(map)
}

/// Reads and parses a JSON config file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ImportError::Json {
        path: path.to_owned(),
        source,
    })
}

/// The weights file of an HF model directory: `model.safetensors`, else
/// `pytorch_model.bin`.
pub fn hf_weights_file(dir: &Path) -> Result<PathBuf, ImportError> {
    ["model.safetensors", "pytorch_model.bin"]
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ImportError::Format {
            path: dir.to_owned(),
            message: "no model.safetensors or pytorch_model.bin in this directory".into(),
        })
}

#[cfg(test)]
mod tests;
