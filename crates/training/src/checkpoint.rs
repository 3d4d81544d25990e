//! Training checkpoints: one file holding the run's state (JSON) and named
//! binary sections (models as burnpack, optimizer state, queues), written to
//! a temporary file and renamed into place, so a crash never leaves a
//! half-written checkpoint.
//!
//! Layout: the magic `VLCKPT01`, a little-endian `u64` header length, the
//! JSON header (`{"state": …, "sections": [{"name", "len"}]}`), then the
//! sections back to back. Loading reads the whole file into memory: nothing
//! is read lazily from a path that a later save may replace.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use crate::TrainError;

const MAGIC: &[u8; 8] = b"VLCKPT01";

/// A checkpoint in memory.
#[derive(Debug, Clone, Default)]
pub struct Checkpoint {
    /// Run state (step, epoch, config, …).
    pub state: serde_json::Value,
    /// Named binary sections, in order.
    pub sections: Vec<(String, Vec<u8>)>,
}

#[derive(Serialize, Deserialize)]
struct Header {
    state: serde_json::Value,
    sections: Vec<SectionHeader>,
}

#[derive(Serialize, Deserialize)]
struct SectionHeader {
    name: String,
    len: u64,
}

impl Checkpoint {
    /// Adds a section.
    pub fn push(&mut self, name: &str, bytes: Vec<u8>) {
        self.sections.push((name.to_owned(), bytes));
    }

    /// The section called `name`.
    pub fn section(&self, name: &str) -> Result<&[u8], TrainError> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| b.as_slice())
            .ok_or_else(|| TrainError::Checkpoint(format!("no `{name}` section")))
    }

    /// Writes atomically: to `path.tmp`, synced, then renamed over `path`.
    pub fn write(&self, path: &Path) -> Result<(), TrainError> {
        let header = Header {
            state: self.state.clone(),
            sections: self
                .sections
                .iter()
                .map(|(name, bytes)| SectionHeader {
                    name: name.clone(),
                    len: bytes.len() as u64,
                })
                .collect(),
        };
        let header =
            serde_json::to_vec(&header).map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let temp = temp_path(path);
        let io = |e: std::io::Error| TrainError::Io {
            path: temp.clone(),
            message: e.to_string(),
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let mut file = std::io::BufWriter::new(std::fs::File::create(&temp).map_err(io)?);
        file.write_all(MAGIC).map_err(io)?;
        file.write_all(&(header.len() as u64).to_le_bytes())
            .map_err(io)?;
        file.write_all(&header).map_err(io)?;
        for (_, bytes) in &self.sections {
            file.write_all(bytes).map_err(io)?;
        }
        let file = file.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&temp, path).map_err(|e| TrainError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Reads a checkpoint written by [`Checkpoint::write`].
    pub fn read(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| TrainError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let bad = |what: &str| TrainError::Checkpoint(format!("{}: {what}", path.display()));
        if bytes.len() < 16 || &bytes[..8] != MAGIC {
            return Err(bad("not a checkpoint of this project"));
        }
        let header_len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let mut offset = 16 + header_len;
        let header: Header = serde_json::from_slice(
            bytes
                .get(16..offset)
                .ok_or_else(|| bad("truncated header"))?,
        )
        .map_err(|e| bad(&e.to_string()))?;
        let mut sections = Vec::with_capacity(header.sections.len());
        for section in header.sections {
            let end = offset + section.len as usize;
            let data = bytes
                .get(offset..end)
                .ok_or_else(|| bad("truncated section"))?;
            sections.push((section.name, data.to_vec()));
            offset = end;
        }
        Ok(Self {
            state: header.state,
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
    module
        .save_into(&mut store)
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    let bytes = store
        .get_bytes()
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    Ok(bytes.to_vec())
}

/// Loads burnpack bytes into `module`, strictly.
pub fn load_module_bytes<M: Module>(mut module: M, bytes: &[u8]) -> Result<M, TrainError> {
    let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes.to_vec())));
    let result = module
        .load_from(&mut store)
        .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(TrainError::Checkpoint(format!(
            "checkpoint does not match the model: {result}"
        )));
    }
    Ok(module)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_and_state_round_trip() {
        let path = std::env::temp_dir().join(format!("vl-ckpt-{}.ckpt", std::process::id()));
        let mut checkpoint = Checkpoint {
            state: serde_json::json!({ "step": 7 }),
            sections: Vec::new(),
        };
        checkpoint.push("a", vec![1, 2, 3]);
        checkpoint.push("b", vec![]);
        checkpoint.write(&path).unwrap();
        assert!(!temp_path(&path).exists());
        let read = Checkpoint::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.state["step"], 7);
        assert_eq!(read.section("a").unwrap(), &[1, 2, 3]);
        assert!(read.section("b").unwrap().is_empty());
        assert!(read.section("c").is_err());
    }
}
