//! Checking every file against `backup_manifest` as it streams.
//!
//! The server sends the manifest at the very end, after every archive, so each file's size and
//! checksum (with the algorithm the `BASE_BACKUP` command asked for, known in advance) are
//! computed while its bytes pass and remembered — path, size, checksum: memory grows with the
//! number of files, not with their size — and the whole list is checked once the manifest has
//! arrived: same files, same sizes, same checksums, WAL ranges covering the backup.

use pg_backup_manifest::{ChecksumAlgorithm, FileHasher, Mismatch, Verifier, VerifyError};

/// How many mismatches an error message shows.
const MISMATCHES_SHOWN: usize = 10;

/// Why the backup does not match its `backup_manifest`.
#[derive(Debug, thiserror::Error)]
pub enum ManifestFailure {
    /// A received file the verifier cannot record (a path that is not plain, too many files).
    #[error("{0}")]
    Received(VerifyError),
    /// The manifest is larger than the limit.
    #[error("backup_manifest is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The server (13 or later) sent no manifest.
    #[error("the server sent no backup_manifest")]
    Missing,
    /// The backup and the manifest disagree (every mismatch is kept; the message shows the
    /// first ten).
    #[error("{}", show_mismatches(.0))]
    Mismatches(Vec<Mismatch>),
}

fn show_mismatches(mismatches: &[Mismatch]) -> String {
    let shown: Vec<String> = mismatches.iter().take(MISMATCHES_SHOWN).map(ToString::to_string).collect();
    let more = mismatches.len().saturating_sub(shown.len());
    let tail = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    format!("{}{tail}", shown.join("; "))
}

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
    pub fn file_check(&self, _manifest_path: &str) -> Option<FileCheck> {
        self.algorithm.map(|a| FileCheck(FileHasher::new(a)))
    }

    /// A file has been received whole.
    pub fn file_received(&mut self, manifest_path: String, check: FileCheck) -> Result<(), ManifestFailure> {
        if let Some(verifier) = &mut self.verifier {
            verifier
                .file_received_digest(manifest_path.as_bytes(), check.0.finish_digest())
                .map_err(ManifestFailure::Received)?;
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
    pub fn manifest_data(&mut self, bytes: &[u8]) -> Result<(), ManifestFailure> {
        if self.manifest.len() + bytes.len() > self.limit {
            return Err(ManifestFailure::TooLarge { limit: self.limit });
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
    ) -> Result<u64, ManifestFailure> {
        let Some(verifier) = self.verifier.take() else {
            return Ok(0);
        };
        if self.manifest.is_empty() {
            return Err(ManifestFailure::Missing);
        }
        let manifest = std::mem::take(&mut self.manifest);
        let report = verifier.finish(&manifest, start, end).map_err(ManifestFailure::Mismatches)?;
        Ok(report.files_verified)
    }
}
