//! Opening a `.tflite` file: size bound, sha256 check, TFLite identifier check, mapping.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use thiserror::Error;

/// A TFLite flatbuffer carries this file identifier at bytes 4..8.
const TFLITE_IDENTIFIER: &[u8; 4] = b"TFL3";

/// Why a model file is refused.
#[derive(Debug, Error)]
pub enum ModelFileError {
    #[error("cannot open: {0}")]
    Open(std::io::Error),
    #[error("cannot stat: {0}")]
    Stat(std::io::Error),
    #[error("{len} bytes is over the {max}-byte limit")]
    TooLarge { len: u64, max: u64 },
    #[error("{0} bytes is too short to be a TFLite model")]
    TooShort(u64),
    #[error("cannot map: {0}")]
    Map(std::io::Error),
    #[error("sha256 mismatch: expected {expected}, the file has {actual}")]
    Sha256Mismatch { expected: String, actual: String },
    #[error("not a TFLite model (no TFL3 identifier)")]
    NotTflite,
}

/// The file mapped read-only, with its digest.
pub struct ModelFile {
    pub bytes: Arc<memmap2::Mmap>,
    pub sha256: String,
}

impl ModelFile {
    /// Maps `path` and checks it. Model files are artifacts fogd does not rewrite in place: a
    /// new version is a new file, so the mapping stays valid while in use.
    pub fn open(
        path: &Path,
        expected_sha256: Option<&str>,
        max_bytes: u64,
    ) -> Result<Self, ModelFileError> {
        let file = File::open(path).map_err(ModelFileError::Open)?;
        let len = file.metadata().map_err(ModelFileError::Stat)?.len();
        if len > max_bytes {
            return Err(ModelFileError::TooLarge {
                len,
                max: max_bytes,
            });
        }
        if len < 8 {
            return Err(ModelFileError::TooShort(len));
        }
        // SAFETY: read-only mapping of a file fogd treats as immutable (see above).
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(ModelFileError::Map)?;
        let sha256 = hex::encode(Sha256::digest(&bytes[..]));
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(ModelFileError::Sha256Mismatch {
                expected: expected.to_owned(),
                actual: sha256,
            });
        }
        if &bytes[4..8] != TFLITE_IDENTIFIER {
            return Err(ModelFileError::NotTflite);
        }
        Ok(Self {
            bytes: Arc::new(bytes),
            sha256,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        file
    }

    #[test]
    fn rejects_files_that_are_not_tflite() {
        let file = write(b"GIF89a-not-a-model");
        let error = ModelFile::open(file.path(), None, 1 << 20).err().unwrap();
        assert!(matches!(error, ModelFileError::NotTflite), "{error}");
        let short = write(b"abc");
        let error = ModelFile::open(short.path(), None, 1 << 20).err().unwrap();
        assert!(matches!(error, ModelFileError::TooShort(3)), "{error}");
    }

    #[test]
    fn checks_size_and_digest() {
        let file = write(b"\x1c\0\0\0TFL3rest-of-model");
        let error = ModelFile::open(file.path(), None, 8).err().unwrap();
        assert!(
            error.to_string().contains("over the 8-byte limit"),
            "{error}"
        );
        let error = ModelFile::open(file.path(), Some("00"), 1 << 20)
            .err()
            .unwrap();
        assert!(
            matches!(error, ModelFileError::Sha256Mismatch { .. }),
            "{error}"
        );
        let ok = ModelFile::open(file.path(), None, 1 << 20).unwrap();
        let again = ModelFile::open(file.path(), Some(&ok.sha256.to_uppercase()), 1 << 20);
        assert!(again.is_ok());
    }
}
