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
pub use litert::{LIBRARY_ENV, STANDARD_LOCATIONS, locate_library};
pub use metrics::InferenceMetrics;
pub use reference::inputs as reference_inputs;
pub use registry::{
    Availability, ModelConfidence, ModelRegistry, ModelStatus, ModelVersion, SyncAction,
    VersionConfidence,
};
pub use shadow::ShadowReport;
pub use tensor::{ElementType, Quantization, TensorSpec, argmax};

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
