//! Reference vectors: inputs and the exact outputs a model must produce before fogd
//! activates it. The format is what `models/*/train.py` writes (see models/README.md).

use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::InferenceError;
use super::litert::LoadedModel;

/// Why a model's reference vectors could not be read or were not reproduced.
#[derive(Debug, Error)]
pub enum ReferenceError {
    #[error("cannot read reference vectors {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("reference vectors {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("reference vectors {0} hold no case")]
    Empty(String),
    #[error("reference case {index}: {source}")]
    Run {
        index: usize,
        source: InferenceError,
    },
    #[error("reference case {index}: expected {expected:?}, got {got:?}")]
    Mismatch {
        index: usize,
        expected: Vec<i8>,
        got: Vec<i8>,
    },
}

#[derive(Debug, Deserialize)]
struct ReferenceFile {
    cases: Vec<ReferenceCase>,
}

/// One case: a single int8 input tensor and the single int8 output expected for it.
#[derive(Debug, Deserialize)]
struct ReferenceCase {
    input_i8: Vec<i8>,
    output_i8: Vec<i8>,
}

fn load(path: &Path) -> Result<ReferenceFile, ReferenceError> {
    let shown = || path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ReferenceError::Read {
        path: shown(),
        source,
    })?;
    let file: ReferenceFile =
        serde_json::from_str(&text).map_err(|source| ReferenceError::Parse {
            path: shown(),
            source,
        })?;
    if file.cases.is_empty() {
        return Err(ReferenceError::Empty(shown()));
    }
    Ok(file)
}

/// The input tensor of every case, as the bytes the runtime takes.
pub fn inputs(path: &Path) -> Result<Vec<Vec<u8>>, ReferenceError> {
    Ok(load(path)?
        .cases
        .iter()
        .map(|case| case.input_i8.iter().map(|&v| v as u8).collect())
        .collect())
}

/// Runs every case; the first mismatch is the error. Returns the number of cases.
pub fn check(model: &LoadedModel, path: &Path) -> Result<usize, ReferenceError> {
    let file = load(path)?;
    for (index, case) in file.cases.iter().enumerate() {
        let input: Vec<u8> = case.input_i8.iter().map(|&v| v as u8).collect();
        let outputs = model
            .run(&[&input])
            .map_err(|source| ReferenceError::Run { index, source })?;
        let got: Vec<i8> = outputs
            .first()
            .map(|o| o.iter().map(|&b| b as i8).collect())
            .unwrap_or_default();
        if got != case.output_i8 {
            return Err(ReferenceError::Mismatch {
                index,
                expected: case.output_i8.clone(),
                got,
            });
        }
    }
    Ok(file.cases.len())
}
