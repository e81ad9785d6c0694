//! Opening a `.tflite` file: size bound, sha256 check, TFLite identifier check, mapping.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

/// A TFLite flatbuffer carries this file identifier at bytes 4..8.
const TFLITE_IDENTIFIER: &[u8; 4] = b"TFL3";

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
    ) -> Result<Self, String> {
        let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let len = file
            .metadata()
            .map_err(|e| format!("cannot stat: {e}"))?
            .len();
        if len > max_bytes {
            return Err(format!("{len} bytes is over the {max_bytes}-byte limit"));
        }
        if len < 8 {
            return Err(format!("{len} bytes is too short to be a TFLite model"));
        }
        // SAFETY: read-only mapping of a file fogd treats as immutable (see above).
        let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| format!("cannot map: {e}"))?;
        let sha256 = hex::encode(Sha256::digest(&bytes[..]));
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(format!(
                "sha256 mismatch: expected {expected}, the file has {sha256}"
            ));
        }
        if &bytes[4..8] != TFLITE_IDENTIFIER {
            return Err("not a TFLite model (no TFL3 identifier)".to_owned());
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
        assert!(error.contains("not a TFLite model"), "{error}");
        let short = write(b"abc");
        let error = ModelFile::open(short.path(), None, 1 << 20).err().unwrap();
        assert!(error.contains("too short"), "{error}");
    }

    #[test]
    fn checks_size_and_digest() {
        let file = write(b"\x1c\0\0\0TFL3rest-of-model");
        let error = ModelFile::open(file.path(), None, 8).err().unwrap();
        assert!(error.contains("over the 8-byte limit"), "{error}");
        let error = ModelFile::open(file.path(), Some("00"), 1 << 20)
            .err()
            .unwrap();
        assert!(error.contains("sha256 mismatch"), "{error}");
        let ok = ModelFile::open(file.path(), None, 1 << 20).unwrap();
        let again = ModelFile::open(file.path(), Some(&ok.sha256.to_uppercase()), 1 << 20);
        assert!(again.is_ok());
    }
}
