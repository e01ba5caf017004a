//! Verifying a backup against its manifest, as pg_verifybackup does
//! (`src/bin/pg_verifybackup/pg_verifybackup.c`), but fed with what was received.
//!
//! The server sends `backup_manifest` after every archive, so a streaming client computes
//! each file's size and checksum while its bytes pass ([`FileHasher`](crate::FileHasher),
//! with the algorithm asked for in `BASE_BACKUP`), hands the result to
//! [`Verifier::file_received`] and keeps nothing else; once the manifest has arrived,
//! [`Verifier::finish`] checks everything at once. Memory: one compact record (path, size,
//! checksum bytes) per file, proportional to the file count only.

use std::collections::HashMap;
use std::fmt;

use crate::checksum::{Checksum, ChecksumAlgorithm, ChecksumHexError, FileDigest};
use crate::manifest::{Limits, Manifest, ManifestError, WalRange};
use crate::path::{PathProblem, check_relative_path, display_path, is_under, is_wal_segment_path};
use pg_wire::replication::Lsn;

/// Paths that may legitimately differ between the backup and its manifest (prefix match: an
/// entry also covers everything under it, like pg_verifybackup's `-i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoreList {
    prefixes: Vec<Box<[u8]>>,
}

impl IgnoreList {
    /// Nothing ignored.
    pub fn empty() -> IgnoreList {
        IgnoreList { prefixes: Vec::new() }
    }

    /// For a streamed backup: only `backup_manifest` (never listed in itself). WAL segments
    /// under `pg_wal/` are always accepted (never listed); the `pg_wal/archive_status/*.done`
    /// and `pg_wal/*.history` files the server does list are checked.
    pub fn streamed() -> IgnoreList {
        IgnoreList { prefixes: vec![Box::from(&b"backup_manifest"[..])] }
    }

    /// pg_verifybackup's defaults for a directory: `backup_manifest`, `pg_wal` (WAL is checked
    /// separately), and `postgresql.auto.conf`, `recovery.signal`, `standby.signal` (which
    /// `pg_basebackup -R` writes or changes after the backup).
    pub fn pg_verifybackup() -> IgnoreList {
        let names: [&[u8]; 5] =
            [b"backup_manifest", b"pg_wal", b"postgresql.auto.conf", b"recovery.signal", b"standby.signal"];
        IgnoreList { prefixes: names.iter().map(|n| Box::from(*n)).collect() }
    }

    /// Adds `path` (and everything under it).
    pub fn add(&mut self, path: impl AsRef<[u8]>) -> &mut Self {
        let path = path.as_ref();
        let path = path.strip_suffix(b"/").unwrap_or(path);
        self.prefixes.push(Box::from(path));
        self
    }

    /// Whether `path` is ignored.
    pub fn contains(&self, path: &[u8]) -> bool {
        self.prefixes.iter().any(|p| is_under(path, p))
    }
}

impl Default for IgnoreList {
    fn default() -> Self {
        IgnoreList::streamed()
    }
}

/// A received file the verifier cannot record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The path is not a plain relative path, or too long.
    #[error("received file \"{path}\": {problem}")]
    Path {
        /// The path (display form).
        path: String,
        /// What is wrong.
        problem: PathProblem,
    },
    /// The checksum text is not one of the manifest's encodings.
    #[error("received file \"{path}\": {problem}")]
    Checksum {
        /// The path (display form).
        path: String,
        /// What is wrong.
        problem: ChecksumHexError,
    },
    /// More files than [`Limits::max_files`].
    #[error("more than {0} files received")]
    TooManyFiles(usize),
}

/// One way in which the backup and its manifest disagree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    /// The manifest itself is unusable.
    #[error("{0}")]
    Manifest(ManifestError),
    /// Listed in the manifest but not received (pg_verifybackup: "present in the manifest but
    /// not on disk").
    #[error("\"{path}\" is in the manifest but was not received")]
    Missing {
        /// The path (display form).
        path: String,
    },
    /// Received but not in the manifest.
    #[error("\"{path}\" was received but is not in the manifest")]
    Unexpected {
        /// The path (display form).
        path: String,
    },
    /// Received more than once.
    #[error("\"{path}\" was received {count} times")]
    Duplicate {
        /// The path (display form).
        path: String,
        /// How many times.
        count: u32,
    },
    /// Sizes differ.
    #[error("\"{path}\" has size {received} but size {manifest} in the manifest")]
    Size {
        /// The path (display form).
        path: String,
        /// Size in the manifest.
        manifest: u64,
        /// Size received.
        received: u64,
    },
    /// Checksums differ.
    #[error("\"{path}\": {algorithm} checksum {received} does not match {manifest} in the manifest")]
    Checksum {
        /// The path (display form).
        path: String,
        /// The algorithm.
        algorithm: ChecksumAlgorithm,
        /// Hex from the manifest.
        manifest: String,
        /// Hex computed.
        received: String,
    },
    /// The file was hashed with another algorithm than the manifest's (or not at all), so its
    /// checksum could not be compared.
    #[error("\"{path}\": the manifest has a {manifest} checksum but {received} was computed")]
    Algorithm {
        /// The path (display form).
        path: String,
        /// Algorithm of the manifest entry.
        manifest: ChecksumAlgorithm,
        /// Algorithm used on the received data.
        received: ChecksumAlgorithm,
    },
    /// `WAL-Ranges` do not fit together or do not match the backup's start and end.
    #[error("WAL-Ranges: {0}")]
    WalRanges(String),
    /// The v2 `System-Identifier` differs from the server's (IDENTIFY_SYSTEM or `pg_control`).
    #[error("the manifest's System-Identifier is {manifest}, the backup's is {expected}")]
    SystemIdentifier {
        /// From the manifest.
        manifest: u64,
        /// From the server or the control file.
        expected: u64,
    },
    /// The WAL a range of the manifest needs is missing or damaged (directory verification).
    #[error("WAL range (timeline {}, {} to {}): {detail}", range.timeline, range.start, range.end)]
    Wal {
        /// The range.
        range: WalRange,
        /// What is wrong, and where.
        detail: String,
    },
    /// A file that could not be read or is not a regular file (directory verification).
    #[error("\"{path}\": {detail}")]
    Io {
        /// The path (display form).
        path: String,
        /// What went wrong.
        detail: String,
    },
}

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Manifest version (1 or 2).
    pub manifest_version: u32,
    /// `System-Identifier` (version 2).
    pub system_identifier: Option<u64>,
    /// Files of the manifest whose size matched.
    pub files_verified: u64,
    /// Files whose checksum was compared too.
    pub checksums_verified: u64,
    /// Bytes in the verified files.
    pub bytes_verified: u64,
    /// Received files accepted without a manifest entry (ignore list, WAL segments), display
    /// form.
    pub ignored: Vec<String>,
    /// The manifest's WAL ranges.
    pub wal_ranges: Vec<WalRange>,
    /// WAL records whose CRC was verified (directory verification that parses WAL).
    pub wal_records_verified: u64,
}

#[derive(Debug)]
struct Received {
    size: u64,
    checksum: Checksum,
    count: u32,
}

/// Collects what was received, then checks it against the manifest.
#[derive(Debug)]
pub struct Verifier {
    received: HashMap<Box<[u8]>, Received>,
    ignore: IgnoreList,
    limits: Limits,
    require_checksums: bool,
    system_identifier: Option<u64>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier::new()
    }
}

impl Verifier {
    /// A verifier for a streamed backup: [`IgnoreList::streamed`], default [`Limits`], every
    /// checksum the manifest has must have been computed with the same algorithm.
    pub fn new() -> Verifier {
        Verifier {
            received: HashMap::new(),
            ignore: IgnoreList::streamed(),
            limits: Limits::default(),
            require_checksums: true,
            system_identifier: None,
        }
    }

    /// Replaces the ignore list.
    pub fn with_ignore(mut self, ignore: IgnoreList) -> Verifier {
        self.ignore = ignore;
        self
    }

    /// Replaces the limits (path length, file count; the manifest limits for
    /// [`finish`](Verifier::finish)).
    pub fn with_limits(mut self, limits: Limits) -> Verifier {
        self.limits = limits;
        self
    }

    /// With `false`, files received without a checksum (algorithm `None`) are checked by size
    /// only, like `pg_verifybackup --skip-checksums`.
    pub fn require_checksums(mut self, require: bool) -> Verifier {
        self.require_checksums = require;
        self
    }

    /// The system identifier the manifest (version 2) must carry, e.g. from IDENTIFY_SYSTEM.
    pub fn expect_system_identifier(&mut self, system_identifier: u64) -> &mut Self {
        self.system_identifier = Some(system_identifier);
        self
    }

    /// Records a received file: its manifest path (`pg_tblspc/<oid>/…` for tablespace files),
    /// size, and checksum as the manifest writes it (hex, `""` when none was computed; the
    /// algorithm follows from the length).
    pub fn file_received(
        &mut self,
        path: impl AsRef<[u8]>,
        size: u64,
        checksum_hex: &str,
    ) -> Result<(), VerifyError> {
        let path = path.as_ref();
        let checksum = Checksum::from_hex_any(checksum_hex)
            .map_err(|problem| VerifyError::Checksum { path: display_path(path), problem })?;
        self.file_received_checksum(path, size, checksum)
    }

    /// Records a received file from its [`FileDigest`].
    pub fn file_received_digest(
        &mut self,
        path: impl AsRef<[u8]>,
        digest: FileDigest,
    ) -> Result<(), VerifyError> {
        self.file_received_checksum(path, digest.size, digest.checksum)
    }

    /// Records a received file with a decoded checksum (`Checksum::none()` when none was
    /// computed).
    pub fn file_received_checksum(
        &mut self,
        path: impl AsRef<[u8]>,
        size: u64,
        checksum: Checksum,
    ) -> Result<(), VerifyError> {
        let path = path.as_ref();
        check_relative_path(path, self.limits.max_path_len)
            .map_err(|problem| VerifyError::Path { path: display_path(path), problem })?;
        if let Some(r) = self.received.get_mut(path) {
            r.count = r.count.saturating_add(1);
            return Ok(());
        }
        if self.received.len() >= self.limits.max_files {
            return Err(VerifyError::TooManyFiles(self.limits.max_files));
        }
        self.received.insert(Box::from(path), Received { size, checksum, count: 1 });
        Ok(())
    }

    /// Number of distinct files recorded.
    pub fn files_received(&self) -> usize {
        self.received.len()
    }

    /// Parses `manifest` (raw bytes, checksum verified) and checks everything received against
    /// it; `start` and `end` are the backup's `(LSN, timeline)` from the BASE_BACKUP result
    /// sets, when known. Returns every mismatch found, not only the first.
    pub fn finish(
        self,
        manifest: &[u8],
        start: Option<(u64, u32)>,
        end: Option<(u64, u32)>,
    ) -> Result<Report, Vec<Mismatch>> {
        match Manifest::parse_with_limits(manifest, &self.limits) {
            Ok(m) => self.finish_parsed(&m, start, end),
            Err(e) => Err(vec![Mismatch::Manifest(e)]),
        }
    }

    /// Like [`finish`](Verifier::finish) with an already parsed manifest.
    pub fn finish_parsed(
        self,
        manifest: &Manifest,
        start: Option<(u64, u32)>,
        end: Option<(u64, u32)>,
    ) -> Result<Report, Vec<Mismatch>> {
        let mut mismatches = Vec::new();
        let mut report = Report {
            manifest_version: manifest.version(),
            system_identifier: manifest.system_identifier(),
            files_verified: 0,
            checksums_verified: 0,
            bytes_verified: 0,
            ignored: Vec::new(),
            wal_ranges: manifest.wal_ranges().to_vec(),
            wal_records_verified: 0,
        };

        if let (Some(expected), Some(found)) = (self.system_identifier, manifest.system_identifier())
            && expected != found
        {
            mismatches.push(Mismatch::SystemIdentifier { manifest: found, expected });
        }
        mismatches
            .extend(check_wal_ranges(manifest.wal_ranges(), start, end).into_iter().map(Mismatch::WalRanges));

        for file in manifest.files() {
            let Some(got) = self.received.get(file.path()) else {
                if !self.ignore.contains(file.path()) {
                    mismatches.push(Mismatch::Missing { path: file.display_path() });
                }
                continue;
            };
            if got.size != file.size() {
                mismatches.push(Mismatch::Size {
                    path: file.display_path(),
                    manifest: file.size(),
                    received: got.size,
                });
                continue;
            }
            let wanted = file.checksum();
            if wanted.algorithm() != ChecksumAlgorithm::None {
                if got.checksum.algorithm() == wanted.algorithm() {
                    if got.checksum.as_bytes() != wanted.as_bytes() {
                        mismatches.push(Mismatch::Checksum {
                            path: file.display_path(),
                            algorithm: wanted.algorithm(),
                            manifest: wanted.to_hex(),
                            received: got.checksum.to_hex(),
                        });
                        continue;
                    }
                    report.checksums_verified += 1;
                } else if self.require_checksums || got.checksum.algorithm() != ChecksumAlgorithm::None {
                    mismatches.push(Mismatch::Algorithm {
                        path: file.display_path(),
                        manifest: wanted.algorithm(),
                        received: got.checksum.algorithm(),
                    });
                    continue;
                }
            }
            report.files_verified += 1;
            report.bytes_verified += file.size();
        }

        let mut extra: Vec<(&[u8], &Received)> = self.received.iter().map(|(p, r)| (&**p, r)).collect();
        extra.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (path, got) in extra {
            if got.count > 1 {
                mismatches.push(Mismatch::Duplicate { path: display_path(path), count: got.count });
            }
            if manifest.file(path).is_some() {
                continue;
            }
            if self.ignore.contains(path) || is_wal_segment_path(path) {
                report.ignored.push(display_path(path));
            } else {
                mismatches.push(Mismatch::Unexpected { path: display_path(path) });
            }
        }

        if mismatches.is_empty() { Ok(report) } else { Err(mismatches) }
    }
}

/// Checks that `ranges` chain together as `AddWALInfoToBackupManifest` writes them (newest
/// timeline first, each older range ending where the newer one begins, timelines strictly
/// decreasing, start ≤ end) and, when given, that they span the backup's `start` and `end`
/// `(LSN, timeline)`. Returns one message per problem.
pub fn check_wal_ranges(
    ranges: &[WalRange],
    start: Option<(u64, u32)>,
    end: Option<(u64, u32)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let (Some(newest), Some(oldest)) = (ranges.first(), ranges.last()) else {
        problems.push("the manifest lists no WAL range".to_owned());
        return problems;
    };
    for (i, r) in ranges.iter().enumerate() {
        if r.start > r.end {
            problems.push(format!(
                "[{i}] on timeline {} starts at {} after its end {}",
                r.timeline, r.start, r.end
            ));
        }
    }
    for (i, pair) in ranges.windows(2).enumerate() {
        let (newer, older) = (&pair[0], &pair[1]);
        if older.timeline >= newer.timeline {
            problems.push(format!(
                "[{}] timeline {} is not older than [{i}] timeline {} (newest must come first)",
                i + 1,
                older.timeline,
                newer.timeline
            ));
        }
        if older.end != newer.start {
            problems.push(format!(
                "[{}] (timeline {}) ends at {} but [{i}] (timeline {}) starts at {}",
                i + 1,
                older.timeline,
                older.end,
                newer.timeline,
                newer.start
            ));
        }
    }
    if let Some((lsn, tli)) = end
        && (newest.end != Lsn(lsn) || newest.timeline != tli)
    {
        problems.push(format!(
            "the newest range ends at {} on timeline {}, the backup ended at {} on timeline {tli}",
            newest.end,
            newest.timeline,
            Lsn(lsn)
        ));
    }
    if let Some((lsn, tli)) = start
        && (oldest.start != Lsn(lsn) || oldest.timeline != tli)
    {
        problems.push(format!(
            "the oldest range starts at {} on timeline {}, the backup started at {} on timeline {tli}",
            oldest.start,
            oldest.timeline,
            Lsn(lsn)
        ));
    }
    problems
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "backup verified against manifest v{}: {} files ({} bytes), {} checksums",
            self.manifest_version, self.files_verified, self.bytes_verified, self.checksums_verified
        )?;
        if self.wal_records_verified > 0 {
            write!(f, ", {} WAL records", self.wal_records_verified)?;
        }
        Ok(())
    }
}
