//! Local inference on TFLite models through LiteRT, loaded at run time: the runtime
//! library, memory-mapped and checked model files, and the registry that swaps versions
//! and runs shadows. Nothing outside this module knows LiteRT is reached through FFI.

mod confidence;
mod ffi;
mod litert;
mod metrics;
mod model_file;
mod reference;
mod registry;
mod shadow;
mod tensor;

use thiserror::Error;

pub use confidence::ConfidenceSnapshot;
pub use ffi::LibraryError;
pub use litert::{LIBRARY_ENV, STANDARD_LOCATIONS, locate_library};
pub use metrics::InferenceMetrics;
pub use model_file::ModelFileError;
pub use reference::{ReferenceError, inputs as reference_inputs};
pub use registry::{
    Availability, ModelConfidence, ModelRegistry, ModelStatus, ModelVersion, SyncAction,
    VersionConfidence,
};
pub use shadow::ShadowReport;
pub use tensor::{ElementType, Quantization, TensorSpec, argmax};

/// Why a model version was not loaded, activated, shadowed or rolled back.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("inference unavailable: {0}")]
    Unavailable(String),
    #[error("{path}: {source}")]
    File {
        path: String,
        source: ModelFileError,
    },
    #[error("{path}: {source}")]
    Load {
        path: String,
        source: InferenceError,
    },
    #[error("{path}: {source}")]
    Reference {
        path: String,
        source: ReferenceError,
    },
    #[error("version {0} changes the model's signature; give it a new model name")]
    SignatureChanged(String),
    #[error("shadow version {0} does not take and give the same tensors as the active one")]
    ShadowIncompatible(String),
    #[error("model {0:?} has no active version to shadow")]
    NothingToShadow(String),
    #[error("no model named {0:?}")]
    UnknownModel(String),
    #[error("model {0:?} has no previous version")]
    NoPreviousVersion(String),
    #[error(
        "model {name:?} version {version} {direction} {have:?}, the function expects {expected:?}"
    )]
    Shapes {
        name: String,
        version: String,
        direction: &'static str,
        have: Vec<Vec<u32>>,
        expected: Vec<Vec<u32>>,
    },
    #[error("the model slot is poisoned")]
    Poisoned,
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

#[derive(Debug, Error)]
pub enum InferenceError {
    #[error("inference unavailable: {0}")]
    Unavailable(String),
    #[error("no model named {0:?}")]
    UnknownModel(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("{call} failed: {status}")]
    Runtime {
        call: &'static str,
        status: &'static str,
    },
}
