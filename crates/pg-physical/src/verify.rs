//! Checking every file against `backup_manifest` as it streams.
//!
//! The server sends the manifest at the very end, after every archive, so each file's size and
//! checksum (with the algorithm the `BASE_BACKUP` command asked for, known in advance) are
//! computed while its bytes pass and remembered — path, size, checksum: memory grows with the
//! number of files, not with their size — and the whole list is checked once the manifest has
//! arrived: same files, same sizes, same checksums, WAL ranges covering the backup.

use pg_backup_manifest::{ChecksumAlgorithm, FileHasher, Verifier};

use crate::PhysicalError;

/// The running hash of one file.
#[derive(Debug)]
pub struct FileCheck(FileHasher);

impl FileCheck {
    /// Adds a piece of the file.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// Verification state of one backup.
#[derive(Debug)]
pub struct ManifestCheck {
    algorithm: Option<ChecksumAlgorithm>,
    verifier: Option<Verifier>,
    manifest: Vec<u8>,
    limit: usize,
}

/// Largest manifest accepted: about 200 bytes per file, so this allows millions of files.
const MANIFEST_LIMIT: usize = 1 << 30;

impl ManifestCheck {
    /// Verification with `algorithm` when the server sends a manifest (13+), or none (`None`:
    /// PostgreSQL 12 sends no manifest; sizes are still checked against the tar headers).
    pub fn new(algorithm: Option<ChecksumAlgorithm>) -> Self {
        Self {
            verifier: algorithm.map(|_| Verifier::new()),
            algorithm,
            manifest: Vec::new(),
            limit: MANIFEST_LIMIT,
        }
    }

    /// A hasher for a file the manifest should list (`None` without a manifest).
    pub fn file_check(&self, _manifest_path: &[u8]) -> Option<FileCheck> {
        self.algorithm.map(|a| FileCheck(FileHasher::new(a)))
    }

    /// A file has been received whole.
    pub fn file_received(&mut self, manifest_path: Vec<u8>, check: FileCheck) -> Result<(), PhysicalError> {
        if let Some(verifier) = &mut self.verifier {
            verifier
                .file_received_digest(&manifest_path, check.0.finish_digest())
                .map_err(|e| PhysicalError::Manifest(e.to_string()))?;
        }
        Ok(())
    }

    /// The system identifier a version-2 manifest must carry (from `IDENTIFY_SYSTEM`).
    pub fn expect_system_identifier(&mut self, system_identifier: u64) {
        if let Some(v) = &mut self.verifier {
            v.expect_system_identifier(system_identifier);
        }
    }

    /// A piece of the manifest.
    pub fn manifest_data(&mut self, bytes: &[u8]) -> Result<(), PhysicalError> {
        if self.manifest.len() + bytes.len() > self.limit {
            return Err(PhysicalError::Manifest(format!(
                "backup_manifest is larger than {} bytes",
                self.limit
            )));
        }
        self.manifest.extend_from_slice(bytes);
        Ok(())
    }

    /// The backup has ended: checks everything received against the manifest, and the
    /// manifest's WAL ranges against the backup's start and end. Returns how many files were
    /// verified.
    pub fn finish(
        &mut self,
        start: Option<(u64, u32)>,
        end: Option<(u64, u32)>,
    ) -> Result<u64, PhysicalError> {
        let Some(verifier) = self.verifier.take() else {
            return Ok(0);
        };
        if self.manifest.is_empty() {
            return Err(PhysicalError::Manifest("the server sent no backup_manifest".into()));
        }
        let manifest = std::mem::take(&mut self.manifest);
        let report = verifier.finish(&manifest, start, end).map_err(|mismatches| {
            let shown: Vec<String> = mismatches.iter().take(10).map(|m| m.to_string()).collect();
            let more = mismatches.len().saturating_sub(shown.len());
            let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
            PhysicalError::Manifest(format!("{}{tail}", shown.join("; ")))
        })?;
        Ok(report.files_verified)
    }
}
