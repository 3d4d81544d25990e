//! Run-time choice of a burn device among the backends compiled in.
//!
//! The CPU backend (burn's pure-Rust `flex`) is always compiled in; `wgpu`
//! and `cuda` are cargo features of this crate, forwarded by the binaries.
//! This is the only crate that names a concrete backend: library crates take
//! a `&Device`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// A backend a user can ask for with `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// burn's pure-Rust `flex` CPU backend.
    Cpu,
    /// wgpu (Vulkan, Metal, DX12; Mesa's software rasteriser without a GPU).
    Wgpu,
    /// CUDA.
    Cuda,
}

/// Errors of backend selection.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The name is not a backend.
    #[error("unknown backend `{0}` (expected cpu, wgpu or cuda)")]
    Unknown(String),
    /// The backend exists but this binary was built without it.
    #[error(
        "backend `{backend}` is not compiled in; rebuild with `--features {backend}` (compiled: {compiled})"
    )]
    NotCompiled {
        /// The backend asked for.
        backend: Backend,
        /// The backends that are compiled in.
        compiled: String,
    },
}

impl Backend {
    /// Every backend, compiled or not.
    pub const ALL: [Backend; 3] = [Backend::Cpu, Backend::Wgpu, Backend::Cuda];

    /// Whether this binary was built with the backend.
    pub fn is_compiled(self) -> bool {
        match self {
            Backend::Cpu => true,
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
        }
    }

    /// The backends this binary was built with.
    pub fn compiled() -> Vec<Backend> {
        Self::ALL.into_iter().filter(|b| b.is_compiled()).collect()
    }

    /// The device of this backend (the first GPU for wgpu and CUDA), without
    /// autodiff.
    pub fn device(self) -> Result<Device, BackendError> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            backend => Err(BackendError::NotCompiled {
                backend,
                compiled: Self::compiled()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        })
    }
}

impl FromStr for Backend {
    type Err = BackendError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(Backend::Cpu),
            "wgpu" => Ok(Backend::Wgpu),
            "cuda" => Ok(Backend::Cuda),
            _ => Err(BackendError::Unknown(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for backend in Backend::ALL {
            assert_eq!(backend.to_string().parse::<Backend>().unwrap(), backend);
        }
        assert!(matches!(
            "tpu".parse::<Backend>(),
            Err(BackendError::Unknown(_))
        ));
    }

    #[test]
    fn cpu_is_always_compiled_and_others_explain_themselves() {
        assert!(Backend::Cpu.device().is_ok());
        for backend in Backend::ALL {
            if !backend.is_compiled() {
                let message = backend.device().unwrap_err().to_string();
                assert!(message.contains("--features"), "{message}");
            }
        }
    }
}
