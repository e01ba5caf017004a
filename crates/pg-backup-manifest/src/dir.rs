//! Verifying a backup directory on disk (synchronous `std::fs` IO, kept apart from the
//! sans-IO core): like `pg_verifybackup` — every file on disk in the manifest and the reverse,
//! equal sizes, equal checksums, for a version 2 manifest the `System-Identifier` of
//! `global/pg_control`, and (unless [`DirOptions::parse_wal`] is off, `--no-parse-wal`) the WAL
//! of every `WAL-Ranges` entry in `pg_wal/`, record by record, with [`pg_wal`] (what
//! pg_verifybackup asks `pg_waldump` to do).
//!
//! Symbolic links are followed (the `pg_tblspc/<oid>` links lead to the tablespaces), like
//! pg_verifybackup's `stat`. Not done: the control file's CRC (its offset depends on the
//! major version).

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::checksum::{Checksum, FileHasher};
use crate::manifest::{Limits, Manifest};
use crate::path::display_path;
use crate::verify::{IgnoreList, Mismatch, Report, Verifier};

/// Directories nested deeper than this are reported, not followed (symlink cycles).
const MAX_DEPTH: usize = 64;
/// Read size while hashing (pg_verifybackup's `READ_CHUNK_SIZE`).
const READ_CHUNK: usize = 128 * 1024;

/// How [`verify_directory_with`] checks.
#[derive(Debug, Clone)]
pub struct DirOptions {
    /// Paths not checked (default: [`IgnoreList::pg_verifybackup`]).
    pub ignore: IgnoreList,
    /// Compare sizes only (`pg_verifybackup -s`).
    pub skip_checksums: bool,
    /// Parsing limits.
    pub limits: Limits,
    /// Read the WAL of every `WAL-Ranges` entry (default; `pg_verifybackup -n` turns it off).
    pub parse_wal: bool,
    /// Where the WAL is (default: `pg_wal` in the backup; `pg_verifybackup -w`).
    pub wal_dir: Option<PathBuf>,
}

impl Default for DirOptions {
    fn default() -> Self {
        DirOptions {
            ignore: IgnoreList::pg_verifybackup(),
            skip_checksums: false,
            limits: Limits::default(),
            parse_wal: true,
            wal_dir: None,
        }
    }
}

/// Verifies the backup in `dir` against `manifest` (the raw `backup_manifest` bytes) with the
/// default [`DirOptions`].
pub fn verify_directory(dir: &Path, manifest: &[u8]) -> Result<Report, Vec<Mismatch>> {
    verify_directory_with(dir, manifest, &DirOptions::default())
}

/// Verifies the backup in `dir` against `manifest` with `options`; returns every mismatch.
pub fn verify_directory_with(
    dir: &Path,
    manifest: &[u8],
    options: &DirOptions,
) -> Result<Report, Vec<Mismatch>> {
    let manifest =
        Manifest::parse_with_limits(manifest, &options.limits).map_err(|e| vec![Mismatch::Manifest(e)])?;
    let mut problems = Vec::new();
    let mut ignore = options.ignore.clone();
    let mut verifier =
        Verifier::new().with_limits(options.limits.clone()).require_checksums(!options.skip_checksums);

    if manifest.system_identifier().is_some()
        && let Some(id) = control_file_system_identifier(&dir.join("global/pg_control"))
    {
        verifier.expect_system_identifier(id);
    }

    let mut stack: Vec<(Vec<u8>, PathBuf, usize)> = vec![(Vec::new(), dir.to_path_buf(), 0)];
    while let Some((rel, full, depth)) = stack.pop() {
        let entries = match fs::read_dir(&full) {
            Ok(entries) => entries,
            Err(e) if rel.is_empty() => {
                return Err(vec![Mismatch::Io { path: full.display().to_string(), detail: e.to_string() }]);
            }
            Err(e) => {
                problems.push(io_mismatch(&rel, format!("cannot read directory: {e}")));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    problems.push(io_mismatch(&rel, format!("cannot read directory: {e}")));
                    break;
                }
            };
            let name = entry.file_name();
            let mut child = rel.clone();
            if !child.is_empty() {
                child.push(b'/');
            }
            child.extend_from_slice(name.as_bytes());
            if ignore.contains(&child) {
                continue;
            }
            let path = entry.path();
            // Follows symbolic links, like pg_verifybackup's stat().
            let meta = match fs::metadata(&path) {
                Ok(meta) => meta,
                Err(e) => {
                    problems.push(io_mismatch(&child, e.to_string()));
                    continue;
                }
            };
            if meta.is_dir() {
                if depth + 1 >= MAX_DEPTH {
                    problems
                        .push(io_mismatch(&child, format!("directories nested more than {MAX_DEPTH} deep")));
                } else {
                    stack.push((child, path, depth + 1));
                }
                continue;
            }
            if !meta.is_file() {
                problems.push(io_mismatch(&child, "not a regular file or directory".to_owned()));
                continue;
            }
            let listed = manifest.file(&child);
            let checksum = match listed {
                Some(m)
                    if !options.skip_checksums
                        && m.size() == meta.len()
                        && !m.checksum().algorithm().is_empty() =>
                {
                    match hash_file(&path, FileHasher::new(m.checksum().algorithm())) {
                        Ok((size, checksum)) if size == meta.len() => checksum,
                        Ok((size, _)) => {
                            problems.push(io_mismatch(
                                &child,
                                format!("changed size while being read ({size} bytes read)"),
                            ));
                            ignore.add(&child);
                            continue;
                        }
                        Err(e) => {
                            problems.push(io_mismatch(&child, format!("cannot read: {e}")));
                            ignore.add(&child);
                            continue;
                        }
                    }
                }
                _ => Checksum::none(),
            };
            if let Err(e) = verifier.file_received_checksum(&child, meta.len(), checksum) {
                problems.push(io_mismatch(&child, e.to_string()));
                ignore.add(&child);
            }
        }
    }

    let verifier = verifier.with_ignore(ignore);
    let result = verifier.finish_parsed(&manifest, None, None);
    let mut wal_records = 0;
    if options.parse_wal {
        let wal_dir = options.wal_dir.clone().unwrap_or_else(|| dir.join("pg_wal"));
        let expect = pg_wal::dir::Expect {
            system_identifier: manifest.system_identifier(),
            major: server_major(&dir.join("PG_VERSION")),
        };
        for range in manifest.wal_ranges() {
            match pg_wal::dir::verify_range(&wal_dir, range.timeline, range.start, range.end, &expect) {
                Ok(summary) => wal_records += summary.records,
                Err(e) => problems.push(Mismatch::Wal { range: *range, detail: e.to_string() }),
            }
        }
    }
    match result {
        Ok(mut report) if problems.is_empty() => {
            report.wal_records_verified = wal_records;
            Ok(report)
        }
        Ok(_) => Err(problems),
        Err(mut more) => {
            problems.append(&mut more);
            Err(problems)
        }
    }
}

/// The major version in `PG_VERSION`, if it is one the WAL reader knows (else the WAL's own
/// magic is taken, and must be one of 12–18).
fn server_major(path: &Path) -> Option<u32> {
    let text = fs::read_to_string(path).ok()?;
    let major = text.trim().parse().ok()?;
    pg_wal::format::page_magic(major).map(|_| major)
}

fn io_mismatch(rel: &[u8], detail: String) -> Mismatch {
    Mismatch::Io { path: display_path(rel), detail }
}

fn hash_file(path: &Path, mut hasher: FileHasher) -> std::io::Result<(u64, Checksum)> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let digest = hasher.finish_digest();
    Ok((digest.size, digest.checksum))
}

/// `system_identifier`, the first field of `ControlFileData` (`src/include/catalog/pg_control.h`),
/// in the server's byte order (little-endian on every platform this runs on).
fn control_file_system_identifier(path: &Path) -> Option<u64> {
    let mut first = [0u8; 8];
    fs::File::open(path).ok()?.read_exact(&mut first).ok()?;
    Some(u64::from_le_bytes(first))
}
