//! PostgreSQL's `backup_manifest`: strict parsing (versions 1 and 2), streaming per-file
//! checksums, and verification of a backup against it.
//!
//! Sans-IO: bytes in, results out. [`Manifest::parse`] takes the raw manifest and checks its
//! SHA-256 before anything else; [`FileHasher`] computes a file's size and checksum while its
//! bytes pass; [`Verifier`] remembers one compact record per received file and checks them all
//! once the manifest has arrived (the server sends it after every archive). The only IO is in
//! [`dir`], which verifies a backup directory on disk.
//!
//! References: `src/backend/backup/backup_manifest.c` (writer), `src/common/parse_manifest.c`
//! (reader), `src/common/checksum_helper.c` (per-file checksums),
//! `src/bin/pg_verifybackup/pg_verifybackup.c` (verification rules).
//!
//! ```
//! use pg_backup_manifest::{ChecksumAlgorithm, FileHasher};
//! let mut h = FileHasher::new(ChecksumAlgorithm::Crc32c);
//! h.update(b"15\n");
//! assert_eq!(h.finish(), (3, "8a744722".to_owned())); // PG_VERSION of a PostgreSQL 15 cluster
//! ```

mod checksum;
pub mod dir;
mod manifest;
mod path;
mod verify;

pub use checksum::{Checksum, ChecksumAlgorithm, ChecksumHexError, FileDigest, FileHasher};
pub use dir::{DirOptions, verify_directory, verify_directory_with};
pub use manifest::{
    FileProblem, Limits, Manifest, ManifestBuffer, ManifestError, ManifestFile, Problem, WalRange,
    WalRangeProblem,
};
pub use path::{PathProblem, check_relative_path, display_path, is_wal_segment_path};
/// WAL positions: the protocol core's type (`X/X`, padded or not).
pub use pg_wire::replication::Lsn;
pub use verify::{IgnoreList, Mismatch, Report, Verifier, VerifyError, check_wal_ranges};

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `manifest` fuzz target, also replayed by the crate's tests.

    use super::*;

    /// Appends the checksum line PostgreSQL would write after `body` (SHA-256 of `body`).
    pub fn seal(body: &[u8]) -> Vec<u8> {
        let mut out = body.to_vec();
        out.extend_from_slice(b"\"Manifest-Checksum\": \"");
        out.extend_from_slice(hex::encode(checksum::sha256(body)).as_bytes());
        out.extend_from_slice(b"\"}\n");
        out
    }

    /// Parses `data[1..]` as a manifest; when `data[0]` is odd, the checksum line is appended
    /// first ([`seal`]) so that the fuzzer reaches the JSON parser. A parsed manifest must
    /// find each of its files by path and verify against its own entries.
    pub fn parse(data: &[u8]) {
        let Some((&mode, body)) = data.split_first() else { return };
        let sealed;
        let input = if mode & 1 == 1 {
            sealed = seal(body);
            &sealed[..]
        } else {
            body
        };
        let manifest = match Manifest::parse(input) {
            Ok(m) => m,
            Err(e) => {
                std::hint::black_box(e.to_string());
                return;
            }
        };
        let mut verifier = Verifier::new();
        for file in manifest.files() {
            let found = manifest.file(file.path()).expect("every listed file can be looked up");
            assert_eq!(found.path(), file.path());
            verifier
                .file_received_checksum(file.path(), file.size(), file.checksum().clone())
                .expect("a manifest path is a valid received path");
        }
        std::hint::black_box(check_wal_ranges(manifest.wal_ranges(), None, None));
        if let Err(mismatches) = verifier.finish_parsed(&manifest, None, None) {
            for m in &mismatches {
                assert!(matches!(m, Mismatch::WalRanges(_)), "a manifest must verify against itself: {m}");
            }
            std::hint::black_box(mismatches);
        }
    }
}

#[cfg(test)]
mod tests;
