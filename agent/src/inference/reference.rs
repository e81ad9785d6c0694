//! Reference vectors: inputs and the exact outputs a model must produce before fogd
//! activates it. The format is what `models/*/train.py` writes (see models/README.md).

use std::path::Path;

use serde::Deserialize;

use super::litert::LoadedModel;

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

fn load(path: &Path) -> Result<ReferenceFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read reference vectors {}: {e}", path.display()))?;
    let file: ReferenceFile = serde_json::from_str(&text)
        .map_err(|e| format!("reference vectors {}: {e}", path.display()))?;
    if file.cases.is_empty() {
        return Err(format!("reference vectors {} hold no case", path.display()));
    }
    Ok(file)
}

/// The input tensor of every case, as the bytes the runtime takes.
pub fn inputs(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    Ok(load(path)?
        .cases
        .iter()
        .map(|case| case.input_i8.iter().map(|&v| v as u8).collect())
        .collect())
}

/// Runs every case; the first mismatch is the error. Returns the number of cases.
pub fn check(model: &LoadedModel, path: &Path) -> Result<usize, String> {
    let file = load(path)?;
    for (index, case) in file.cases.iter().enumerate() {
        let input: Vec<u8> = case.input_i8.iter().map(|&v| v as u8).collect();
        let outputs = model
            .run(&[&input])
            .map_err(|e| format!("reference case {index}: {e}"))?;
        let got: Vec<i8> = outputs
            .first()
            .map(|o| o.iter().map(|&b| b as i8).collect())
            .unwrap_or_default();
        if got != case.output_i8 {
            return Err(format!(
                "reference case {index}: expected {:?}, got {got:?}",
                case.output_i8
            ));
        }
    }
    Ok(file.cases.len())
}
