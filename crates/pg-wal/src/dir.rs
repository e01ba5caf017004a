//! Verifying a WAL range from a directory of segment files (a backup's `pg_wal/`): the only IO
//! of the crate (synchronous `std::fs`), kept apart from the sans-IO [`WalReader`].

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use pg_wire::replication::Lsn;

use crate::format::{LONG_HEADER, PageHeader, parse_segment_name, segment_name};
use crate::{WalError, WalParams, WalReader, WalSummary};

/// Read size.
const READ_CHUNK: usize = 128 * 1024;
/// The segment size assumed in messages when `pg_wal/` holds no segment to learn it from.
const DEFAULT_SEGMENT_SIZE: u32 = 16 << 20;

/// Why a WAL range of a directory does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirError {
    /// A segment the range needs is not there.
    #[error("{path}: WAL segment missing; the range (timeline {timeline}, {start} to {end}) needs it")]
    MissingSegment {
        /// The file that should hold it.
        path: String,
        /// The range's timeline.
        timeline: u32,
        /// The range's start.
        start: Lsn,
        /// The range's end.
        end: Lsn,
    },
    /// The directory holds no segment file at all (e.g. an emptied `pg_wal`).
    #[error("{path}: no WAL segment; the range (timeline {timeline}, {start} to {end}) needs WAL")]
    NoSegments {
        /// The directory.
        path: String,
        /// The range's timeline.
        timeline: u32,
        /// The range's start.
        start: Lsn,
        /// The range's end.
        end: Lsn,
    },
    /// A file could not be read.
    #[error("{path}: {detail}")]
    Io {
        /// The file or directory.
        path: String,
        /// The OS error.
        detail: String,
    },
    /// The WAL is damaged.
    #[error("{0}")]
    Wal(#[from] WalError),
}

/// What to check the range's WAL against.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    /// The cluster's system identifier (a version 2 manifest's `System-Identifier`).
    pub system_identifier: Option<u64>,
    /// The major version (the backup's `PG_VERSION`).
    pub major: Option<u32>,
}

fn has_segment_files(wal_dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir(wal_dir) else { return false };
    entries.flatten().any(|e| parse_segment_name(e.file_name().as_encoded_bytes(), 1 << 20).is_some())
}

/// The segment size of the WAL in `wal_dir`, from the long header of one of its segment files
/// (one of `timeline` preferred); `None` when there is none to read.
pub fn probe_segment_size(wal_dir: &Path, timeline: u32) -> Option<u32> {
    let mut candidates: Vec<(bool, PathBuf)> = Vec::new();
    for entry in fs::read_dir(wal_dir).ok()?.flatten() {
        let name = entry.file_name();
        let bytes = name.as_encoded_bytes();
        if parse_segment_name(bytes, 1 << 20).is_some() {
            let tli = std::str::from_utf8(&bytes[..8]).ok().and_then(|t| u32::from_str_radix(t, 16).ok());
            candidates.push((tli != Some(timeline), entry.path()));
        }
    }
    candidates.sort();
    candidates.into_iter().find_map(|(_, path)| {
        let mut head = [0u8; LONG_HEADER];
        fs::File::open(path).ok()?.read_exact(&mut head).ok()?;
        let size = PageHeader::parse(&head)?.long?.segment_size;
        pg_wire::replication::check_segment_size(u64::from(size)).ok()?;
        Some(size)
    })
}

/// Verifies the WAL from `start` to `end` on `timeline` in the segment files of `wal_dir`, like
/// `pg_waldump --quiet --path=wal_dir --timeline --start --end` does for `pg_verifybackup`.
pub fn verify_range(
    wal_dir: &Path,
    timeline: u32,
    start: Lsn,
    end: Lsn,
    expect: &Expect,
) -> Result<WalSummary, DirError> {
    if start >= end {
        return Ok(WalSummary { last_record_end: start, ..WalSummary::default() });
    }
    if !has_segment_files(wal_dir) {
        let path = wal_dir.display().to_string();
        return Err(DirError::NoSegments { path, timeline, start, end });
    }
    // Without a readable segment to learn it from, 16 MB: the reader then says what is wrong
    // with the file that is there, or which one is missing.
    let segment_size = probe_segment_size(wal_dir, timeline).unwrap_or(DEFAULT_SEGMENT_SIZE);
    let missing = |segno: u64| DirError::MissingSegment {
        path: wal_dir.join(segment_name(timeline, segno, segment_size)).display().to_string(),
        timeline,
        start,
        end,
    };
    let params = WalParams {
        timeline,
        start,
        segment_size,
        system_identifier: expect.system_identifier,
        major: expect.major,
    };
    let mut reader = WalReader::new(params)?.with_end(end)?;
    let mut buf = vec![0u8; READ_CHUNK];
    let mut last = None;
    while let Some(segno) = reader.next_segment() {
        if last == Some(segno) {
            break; // the reader wants no more of this segment: finish says why
        }
        last = Some(segno);
        let path = wal_dir.join(reader.segment_name(segno));
        let mut file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing(segno)),
            Err(e) => return Err(DirError::Io { path: path.display().to_string(), detail: e.to_string() }),
        };
        reader.begin_segment(segno)?;
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(DirError::Io { path: path.display().to_string(), detail: e.to_string() });
                }
            };
            reader.feed(&buf[..n])?;
            if reader.is_done() {
                break;
            }
        }
        reader.end_segment()?;
    }
    Ok(reader.finish(end)?)
}
