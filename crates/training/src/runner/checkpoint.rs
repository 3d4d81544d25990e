//! Training checkpoints: one file per run holding a typed header (which job
//! wrote it, its config, where the run is, its seed) and named binary
//! sections (models as burnpack, optimizer state, queues), each with a
//! CRC-32. Written to a temporary file, synced and renamed into place, so
//! a crash never leaves a half-written checkpoint.
//!
//! Layout: the magic `VLCKPT02`, a little-endian `u64` header length, the
//! JSON header (`{"state": {"kind", "position", "seed", "config"},
//! "tokenizer", "sections": [{"name", "len", "crc32"}]}`, `tokenizer` the
//! fingerprint of the run's tokenizer, absent in older checkpoints and in
//! those of jobs without text), then the sections back to
//! back. Loading reads the whole file into memory: nothing is read lazily
//! from a path that a later save may replace.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot, RecordError};
use burn::tensor::{Bytes, Device, Tensor, TensorData};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use vl_data::TextTokenizer;

use crate::TrainError;
use crate::runner::Position;

const MAGIC: &[u8; 8] = b"VLCKPT02";
/// The magic of the first format (no checksums, untyped header).
const MAGIC_V1: &[u8; 8] = b"VLCKPT01";

/// The job that wrote a checkpoint, and so the only one that can resume it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    /// `train-albef pretrain`.
    AlbefPretrain,
    /// The vision warm-up that opens a fresh `train-albef pretrain` run.
    AlbefVisionWarmup,
    /// `train-albef ve`.
    AlbefVe,
    /// `train-albef retrieval`.
    AlbefRetrieval,
    /// `train-albef grounding`.
    AlbefGrounding,
    /// `altclip-distill teacher`.
    AltclipTeacher,
    /// `altclip-distill distill` (stage 1).
    AltclipStage1,
    /// `altclip-distill contrastive` (stage 2).
    AltclipStage2,
}

impl std::fmt::Display for JobKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JobKind::AlbefPretrain => "ALBEF pretraining",
            JobKind::AlbefVisionWarmup => "ALBEF vision warm-up",
            JobKind::AlbefVe => "ALBEF SNLI-VE fine-tuning",
            JobKind::AlbefRetrieval => "ALBEF retrieval fine-tuning",
            JobKind::AlbefGrounding => "ALBEF grounding fine-tuning",
            JobKind::AltclipTeacher => "AltCLIP teacher training",
            JobKind::AltclipStage1 => "AltCLIP stage 1 (teacher learning)",
            JobKind::AltclipStage2 => "AltCLIP stage 2 (contrastive tuning)",
        })
    }
}

/// The typed header of a checkpoint: everything but the tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState<C> {
    /// The job that wrote it.
    pub kind: JobKind,
    /// Where the run is.
    pub position: Position,
    /// The seed of every random draw of the run.
    pub seed: u64,
    /// The job's config.
    pub config: C,
}

/// A checkpoint in memory.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    state: RunState<serde_json::Value>,
    /// [`TextTokenizer::fingerprint`] of the run's tokenizer.
    tokenizer: Option<String>,
    /// Named binary sections, in order.
    sections: Vec<(String, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    state: RunState<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tokenizer: Option<String>,
    sections: Vec<SectionHeader>,
}

#[derive(Serialize, Deserialize)]
struct SectionHeader {
    name: String,
    len: u64,
    crc32: u32,
}

impl Checkpoint {
    /// An empty checkpoint of a run.
    pub fn new<C: Serialize>(state: RunState<&C>) -> Result<Self, TrainError> {
        let config = serde_json::to_value(state.config).map_err(|source| TrainError::Json {
            path: "checkpoint header".into(),
            source,
        })?;
        Ok(Self {
            state: RunState {
                kind: state.kind,
                position: state.position,
                seed: state.seed,
                config,
            },
            tokenizer: None,
            sections: Vec::new(),
        })
    }

    /// Records the fingerprint of the tokenizer the run's texts go through.
    pub fn set_tokenizer(&mut self, fingerprint: Option<String>) {
        self.tokenizer = fingerprint;
    }

    /// The recorded tokenizer fingerprint, if any.
    pub fn tokenizer(&self) -> Option<&str> {
        self.tokenizer.as_deref()
    }

    /// Fails unless `tokenizer` is the one the checkpoint at `path` was
    /// trained with (checkpoints that record none accept any).
    pub fn check_tokenizer(
        &self,
        path: &Path,
        tokenizer: &TextTokenizer,
    ) -> Result<(), TrainError> {
        match &self.tokenizer {
            Some(expected) if *expected != tokenizer.fingerprint() => {
                Err(TrainError::TokenizerMismatch {
                    checkpoint: path.to_owned(),
                    tokenizer: tokenizer.path().to_owned(),
                    expected: expected.clone(),
                    found: tokenizer.fingerprint(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The job that wrote it.
    pub fn kind(&self) -> JobKind {
        self.state.kind
    }

    /// The header with its config parsed, if a job of `expected` wrote it.
    pub fn state<C: DeserializeOwned>(&self, expected: JobKind) -> Result<RunState<C>, TrainError> {
        if self.state.kind != expected {
            return Err(TrainError::WrongJob {
                expected,
                found: self.state.kind,
            });
        }
        let config = serde_json::from_value(self.state.config.clone()).map_err(|source| {
            TrainError::Json {
                path: "checkpoint config".into(),
                source,
            }
        })?;
        Ok(RunState {
            kind: self.state.kind,
            position: self.state.position,
            seed: self.state.seed,
            config,
        })
    }

    /// Adds a section.
    pub fn push(&mut self, name: &str, bytes: Vec<u8>) {
        self.sections.push((name.to_owned(), bytes));
    }

    /// Adds a module's weights as a section.
    pub fn push_module<M: Module>(&mut self, name: &str, module: &M) -> Result<(), TrainError> {
        self.push(name, module_bytes(module)?);
        Ok(())
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Result<&[u8], TrainError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| TrainError::MissingSection(name.to_owned()))
    }

    /// `module` with the weights of section `name` loaded strictly.
    pub fn module<M: Module>(&self, name: &str, module: M) -> Result<M, TrainError> {
        load_module_bytes(module, self.section(name)?).map_err(|e| match e {
            TrainError::ModuleMismatch { report, .. } => TrainError::ModuleMismatch {
                section: name.to_owned(),
                report,
            },
            other => other,
        })
    }

    /// Writes atomically: to `path.tmp`, synced, then renamed over `path`.
    /// A failed write removes the temporary file.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let header = Header {
            state: self.state.clone(),
            tokenizer: self.tokenizer.clone(),
            sections: self
                .sections
                .iter()
                .map(|(name, bytes)| SectionHeader {
                    name: name.clone(),
                    len: bytes.len() as u64,
                    crc32: crc32fast::hash(bytes),
                })
                .collect(),
        };
        let header = serde_json::to_vec(&header).map_err(|source| TrainError::Json {
            path: path.to_owned(),
            source,
        })?;
        let temp = temp_path(path);
        let io = |source: std::io::Error| TrainError::Io {
            path: temp.clone(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let written = (|| {
            let mut file = std::io::BufWriter::new(std::fs::File::create(&temp)?);
            file.write_all(MAGIC)?;
            file.write_all(&(header.len() as u64).to_le_bytes())?;
            file.write_all(&header)?;
            for (_, bytes) in &self.sections {
                file.write_all(bytes)?;
            }
            file.into_inner().map_err(|e| e.into_error())?.sync_all()
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(io(e));
        }
        std::fs::rename(&temp, path).map_err(|source| {
            let _ = std::fs::remove_file(&temp);
            TrainError::Io {
                path: path.to_owned(),
                source,
            }
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::write`], checking every
    /// section's length and CRC-32.
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|source| TrainError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_bytes(&bytes).map_err(|reason| TrainError::BadCheckpoint {
            path: path.to_owned(),
            reason,
        })
    }

    fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        match bytes.get(..8) {
            Some(magic) if magic == MAGIC => {}
            Some(magic) if magic == MAGIC_V1 => {
                return Err(
                    "a checkpoint of an older version of this project (VLCKPT01, \
                            without checksums); retrain or resume with that version"
                        .into(),
                );
            }
            _ => return Err("not a checkpoint of this project (no VLCKPT02 magic)".into()),
        }
        let header_len = bytes
            .get(8..16)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .ok_or("truncated before the header length")?;
        let header_end = usize::try_from(header_len)
            .ok()
            .and_then(|len| len.checked_add(16))
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| format!("header length {header_len} exceeds the file"))?;
        let header: Header = serde_json::from_slice(&bytes[16..header_end])
            .map_err(|e| format!("unreadable header: {e}"))?;
        let mut offset = header_end;
        let mut sections = Vec::with_capacity(header.sections.len());
        for section in header.sections {
            let end = usize::try_from(section.len)
                .ok()
                .and_then(|len| offset.checked_add(len))
                .filter(|&end| end <= bytes.len())
                .ok_or_else(|| format!("section `{}` is truncated", section.name))?;
            let data = &bytes[offset..end];
            if crc32fast::hash(data) != section.crc32 {
                return Err(format!(
                    "section `{}` is damaged (its CRC-32 does not match)",
                    section.name
                ));
            }
            sections.push((section.name, data.to_vec()));
            offset = end;
        }
        if offset != bytes.len() {
            return Err(format!(
                "{} bytes after the last section",
                bytes.len() - offset
            ));
        }
        Ok(Self {
            state: header.state,
            tokenizer: header.tokenizer,
            sections,
        })
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// A module as burnpack bytes (parameter ids included, so optimizer state
/// keyed by id still matches after loading).
pub fn module_bytes<M: Module>(module: &M) -> Result<Vec<u8>, TrainError> {
    let mut store = BurnpackStore::from_bytes(None);
    module.save_into(&mut store).map_err(RecordError::from)?;
    let bytes = store.get_bytes().map_err(RecordError::from)?;
    Ok(bytes.to_vec())
}

/// Loads burnpack bytes into `module`, strictly: every parameter present,
/// none left over, every shape right.
pub fn load_module_bytes<M: Module>(mut module: M, bytes: &[u8]) -> Result<M, TrainError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())));
    let result = module.load_from(&mut store).map_err(RecordError::from)?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(TrainError::ModuleMismatch {
            section: "model".into(),
            report: result.to_string(),
        });
    }
    Ok(module)
}

/// 2-d float tensors as little-endian `f32` bytes, back to back.
pub fn tensor_bytes(tensors: &[&Tensor<2>]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for t in tensors {
        let data = (*t).clone().into_data().convert::<f32>();
        let values = data.as_slice::<f32>().expect("converted to f32");
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    bytes
}

/// `count` tensors of `shape` read back from [`tensor_bytes`]'s layout.
pub fn tensors_from_bytes(
    bytes: &[u8],
    section: &str,
    count: usize,
    shape: [usize; 2],
    device: &Device,
) -> Result<Vec<Tensor<2>>, TrainError> {
    let per = shape[0] * shape[1];
    if bytes.len() != count * per * 4 {
        return Err(TrainError::ModuleMismatch {
            section: section.to_owned(),
            report: format!(
                "{} bytes, expected {} for {count} tensors of {shape:?}",
                bytes.len(),
                count * per * 4
            ),
        });
    }
    let floats: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    Ok(floats
        .chunks_exact(per.max(1))
        .take(count)
        .map(|values| Tensor::from_data(TensorData::new(values.to_vec(), shape), device))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.ckpt");
        let mut checkpoint = Checkpoint::new(RunState {
            kind: JobKind::AltclipStage1,
            position: Position {
                step: 7,
                epoch: 1,
                step_in_epoch: 2,
            },
            seed: 3,
            config: &serde_json::json!({ "lr": 0.5 }),
        })
        .unwrap();
        checkpoint.push("a", vec![1, 2, 3]);
        checkpoint.push("b", vec![]);
        checkpoint.write(&path).unwrap();
        assert!(!temp_path(&path).exists());
        (dir, path)
    }

    #[test]
    fn sections_and_typed_state_round_trip() {
        let (_dir, path) = written();
        let read = Checkpoint::read(&path).unwrap();
        let state: RunState<serde_json::Value> = read.state(JobKind::AltclipStage1).unwrap();
        assert_eq!((state.position.step, state.seed), (7, 3));
        assert_eq!(state.config["lr"], 0.5);
        assert_eq!(read.section("a").unwrap(), &[1, 2, 3]);
        assert!(read.section("b").unwrap().is_empty());
        assert!(matches!(
            read.section("c"),
            Err(TrainError::MissingSection(_))
        ));
        let err = read
            .state::<serde_json::Value>(JobKind::AlbefPretrain)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "a checkpoint of AltCLIP stage 1 (teacher learning) where one of ALBEF pretraining is needed"
        );
    }

    #[test]
    fn a_checkpoint_refuses_another_tokenizer() {
        let tokenizer = |texts: &[&str]| {
            vl_data::TextTokenizer::train_wordpiece(
                texts.iter().cycle().take(20),
                60,
                vl_data::Framing::Start,
            )
            .unwrap()
        };
        let own = tokenizer(&["a red circle", "a blue square"]);
        let other = tokenizer(&["a red star", "a green cross"]);
        let (_dir, path) = written();
        let mut checkpoint = Checkpoint::read(&path).unwrap();
        // Older checkpoints record none and accept any.
        checkpoint.check_tokenizer(&path, &other).unwrap();
        checkpoint.set_tokenizer(Some(own.fingerprint()));
        checkpoint.write(&path).unwrap();
        let read = Checkpoint::read(&path).unwrap();
        assert_eq!(read.tokenizer(), Some(own.fingerprint().as_str()));
        read.check_tokenizer(&path, &own).unwrap();
        let err = read.check_tokenizer(&path, &other).unwrap_err().to_string();
        assert!(
            err.starts_with("<trained> is not the tokenizer ")
                && err.contains("run.ckpt was trained with"),
            "{err}"
        );
    }

    #[test]
    fn damage_is_named_never_read() {
        let (_dir, path) = written();
        let good = std::fs::read(&path).unwrap();
        let reason = |bytes: &[u8]| Checkpoint::from_bytes(bytes).unwrap_err();
        // A flipped byte in a section.
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        assert!(reason(&flipped).contains("section `a` is damaged"));
        // Truncated, extended, another magic, an absurd header length.
        assert!(reason(&good[..good.len() - 1]).contains("truncated"));
        assert!(reason(&[good.as_slice(), &[0]].concat()).contains("after the last section"));
        assert!(reason(b"VLCKPT01 and more").contains("older version"));
        assert!(reason(b"PK\x03\x04zip").contains("not a checkpoint"));
        let mut huge = good.clone();
        huge[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(reason(&huge).contains("exceeds the file"));
    }

    #[test]
    fn tensors_round_trip_through_bytes() {
        let device = Device::flex();
        let t = Tensor::<2>::from_data([[1.0f32, -2.0], [3.5, 0.25]], &device);
        let bytes = tensor_bytes(&[&t, &t]);
        let back = tensors_from_bytes(&bytes, "queue", 2, [2, 2], &device).unwrap();
        assert_eq!(back[1].to_data(), t.to_data());
        assert!(tensors_from_bytes(&bytes, "queue", 3, [2, 2], &device).is_err());
    }
}
