//! Parsing `backup_manifest`, versions 1 (PostgreSQL 13-16) and 2 (17+: `System-Identifier`).
//!
//! Implements the format written by `src/backend/backup/backup_manifest.c` and read by
//! `src/common/parse_manifest.c`, at least as strictly:
//!
//! 1. the whole manifest is at most [`Limits::max_manifest_bytes`];
//! 2. its last line is exactly `"Manifest-Checksum": "<64 hex>"}` and the SHA-256 of every byte
//!    before that line matches it (checked on the raw bytes, before any JSON parsing);
//! 3. the JSON is an object whose first key is `PostgreSQL-Backup-Manifest-Version` (1 or 2),
//!    then `System-Identifier` (version 2 only, required there), `Files` and `WAL-Ranges`
//!    (both required, once each), and `Manifest-Checksum` last; unknown keys are errors;
//! 4. each file has `Path` or hex `Encoded-Path` (not both), `Size`, optional `Last-Modified`,
//!    `Checksum-Algorithm` and `Checksum` (both or neither, the length matching the
//!    algorithm); paths are relative with no `.`/`..` components and no duplicates;
//! 5. each WAL range has `Timeline` (≥ 1), `Start-LSN` and `End-LSN`.
//!
//! The manifest is kept whole in memory: the server sends it after all the archives (PG 13/14
//! as a last COPY, 15+ as the `m` part of the copystream), it is needed whole for its checksum,
//! and it is metadata proportional to the number of files (about 100-300 bytes per file), not
//! to their size. [`ManifestBuffer`] collects it under the size limit.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::checksum::{Checksum, ChecksumAlgorithm, ChecksumHexError, sha256};
use crate::path::{PathProblem, check_relative_path, display_path};
use pg_wire::replication::Lsn;

/// The first key of every manifest.
const VERSION_KEY: &str = "PostgreSQL-Backup-Manifest-Version";
/// The start of the manifest's last line.
const CHECKSUM_LINE_PREFIX: &[u8] = b"\"Manifest-Checksum\": \"";

/// Bounds applied while parsing; everything that comes from the manifest is checked against
/// them before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest manifest accepted, in bytes (default 1 GiB).
    pub max_manifest_bytes: usize,
    /// Longest file path, in bytes (default 1024, PostgreSQL's `MAXPGPATH`).
    pub max_path_len: usize,
    /// Largest file size believed (default 16 TiB).
    pub max_file_size: u64,
    /// Most file entries (default 2^25).
    pub max_files: usize,
    /// Most WAL ranges (default 65536; one per timeline crossed during the backup).
    pub max_wal_ranges: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 1 << 30,
            max_path_len: 1024,
            max_file_size: 1 << 44,
            max_files: 1 << 25,
            max_wal_ranges: 1 << 16,
        }
    }
}

/// A manifest that could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// Larger than [`Limits::max_manifest_bytes`].
    #[error("backup_manifest is larger than the limit of {limit} bytes (at least {size})")]
    TooLarge {
        /// Bytes seen so far.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The line structure around the checksum is wrong (what is wrong is said).
    #[error("backup_manifest: {0}")]
    Layout(&'static str),
    /// The SHA-256 of the manifest does not match its `Manifest-Checksum`.
    #[error(
        "backup_manifest checksum mismatch: the manifest says {expected}, its content hashes to {actual}"
    )]
    ChecksumMismatch {
        /// Hex from the manifest.
        expected: String,
        /// Hex computed.
        actual: String,
    },
    /// Invalid content at a position (1-based line and column, as serde_json counts them).
    #[error("backup_manifest line {line} column {column}: {problem}")]
    Invalid {
        /// Line.
        line: usize,
        /// Column.
        column: usize,
        /// What is wrong.
        problem: Problem,
    },
    /// The same path is listed twice.
    #[error("backup_manifest lists \"{path}\" twice: Files[{first}] and Files[{second}]")]
    DuplicatePath {
        /// The path (display form).
        path: String,
        /// Index of the first entry.
        first: usize,
        /// Index of the second entry.
        second: usize,
    },
}

/// What is wrong with the content of a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Not JSON, or a value of the wrong type (serde_json's message).
    #[error("{0}")]
    Json(String),
    /// The first key is not `PostgreSQL-Backup-Manifest-Version`.
    #[error("the first field must be \"PostgreSQL-Backup-Manifest-Version\"")]
    VersionNotFirst,
    /// A version other than 1 and 2.
    #[error("unsupported manifest version {0} (known: 1 and 2)")]
    UnsupportedVersion(u64),
    /// A top-level key that the format does not have.
    #[error("unknown top-level field \"{0}\"")]
    UnknownField(String),
    /// A top-level key given twice.
    #[error("top-level field \"{0}\" appears twice")]
    DuplicateField(&'static str),
    /// A required top-level key is missing.
    #[error("top-level field \"{0}\" is missing")]
    MissingField(&'static str),
    /// `System-Identifier` in a version 1 manifest.
    #[error("\"System-Identifier\" in a version 1 manifest (it came with version 2)")]
    SystemIdentifierInV1,
    /// A field after `Manifest-Checksum`.
    #[error("\"Manifest-Checksum\" must be the last field")]
    FieldAfterChecksum,
    /// More files than [`Limits::max_files`].
    #[error("more than {0} files")]
    TooManyFiles(usize),
    /// More WAL ranges than [`Limits::max_wal_ranges`].
    #[error("more than {0} WAL ranges")]
    TooManyWalRanges(usize),
    /// A bad file entry.
    #[error("Files[{index}] ({path}): {problem}")]
    File {
        /// Index in `Files`.
        index: usize,
        /// The entry's path (display form) or `path unknown`.
        path: String,
        /// What is wrong.
        problem: FileProblem,
    },
    /// A bad WAL range.
    #[error("WAL-Ranges[{index}]: {problem}")]
    WalRange {
        /// Index in `WAL-Ranges`.
        index: usize,
        /// What is wrong.
        problem: WalRangeProblem,
    },
}

/// What is wrong with one `Files` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    /// Not an object, or a value of the wrong type.
    #[error("{0}")]
    Json(String),
    /// A key the format does not have.
    #[error("unknown field \"{0}\"")]
    UnknownField(String),
    /// A key given twice.
    #[error("field \"{0}\" appears twice")]
    DuplicateField(&'static str),
    /// Neither `Path` nor `Encoded-Path`.
    #[error("no \"Path\" or \"Encoded-Path\"")]
    MissingPath,
    /// Both `Path` and `Encoded-Path`.
    #[error("both \"Path\" and \"Encoded-Path\"")]
    BothPaths,
    /// `Encoded-Path` is not an even number of hex digits.
    #[error("\"Encoded-Path\" is not an even number of hex digits")]
    BadEncodedPath,
    /// The path is unusable.
    #[error("{0}")]
    Path(PathProblem),
    /// No `Size`.
    #[error("no \"Size\"")]
    MissingSize,
    /// `Size` beyond [`Limits::max_file_size`].
    #[error("size {size} is larger than the limit of {limit}")]
    SizeTooLarge {
        /// The size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// An algorithm name PostgreSQL does not have.
    #[error("unknown checksum algorithm \"{0}\"")]
    UnknownAlgorithm(String),
    /// `Checksum` without `Checksum-Algorithm`.
    #[error("\"Checksum\" without \"Checksum-Algorithm\"")]
    ChecksumWithoutAlgorithm,
    /// `Checksum-Algorithm` (not NONE) without `Checksum`.
    #[error("\"Checksum-Algorithm\" {0} without \"Checksum\"")]
    AlgorithmWithoutChecksum(ChecksumAlgorithm),
    /// The checksum is not hex or has the wrong length.
    #[error("{0}")]
    Checksum(ChecksumHexError),
}

/// What is wrong with one `WAL-Ranges` entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WalRangeProblem {
    /// Not an object, or a value of the wrong type.
    #[error("{0}")]
    Json(String),
    /// A key the format does not have.
    #[error("unknown field \"{0}\"")]
    UnknownField(String),
    /// A key given twice.
    #[error("field \"{0}\" appears twice")]
    DuplicateField(&'static str),
    /// A required key is missing.
    #[error("no \"{0}\"")]
    Missing(&'static str),
    /// Timeline 0.
    #[error("timeline 0 is not a valid timeline")]
    TimelineZero,
    /// An LSN that is not `X/X`.
    #[error("{field} {value:?} is not an LSN (X/X, 1-8 hex digits each)")]
    BadLsn {
        /// `Start-LSN` or `End-LSN`.
        field: &'static str,
        /// The text (shortened).
        value: String,
    },
}

/// One file of the backup as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    path: Box<[u8]>,
    size: u64,
    last_modified: Option<Box<str>>,
    checksum: Checksum,
}

impl ManifestFile {
    /// The path relative to the data directory, as raw bytes (from `Path` or `Encoded-Path`).
    pub fn path(&self) -> &[u8] {
        &self.path
    }
    /// The path if it is UTF-8.
    pub fn path_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.path).ok()
    }
    /// The path for messages (non-UTF-8 bytes as `\xNN`).
    pub fn display_path(&self) -> String {
        display_path(&self.path)
    }
    /// `Size`.
    pub fn size(&self) -> u64 {
        self.size
    }
    /// `Last-Modified`, as written (`%Y-%m-%d %H:%M:%S GMT`).
    pub fn last_modified(&self) -> Option<&str> {
        self.last_modified.as_deref()
    }
    /// The checksum (algorithm `None` when the manifest has none for this file).
    pub fn checksum(&self) -> &Checksum {
        &self.checksum
    }
}

/// One entry of `WAL-Ranges`: WAL of `timeline` from `start` to `end` is needed to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalRange {
    /// `Timeline`.
    pub timeline: u32,
    /// `Start-LSN`.
    pub start: Lsn,
    /// `End-LSN`.
    pub end: Lsn,
}

/// A parsed, checksum-verified `backup_manifest`.
#[derive(Clone, PartialEq, Eq)]
pub struct Manifest {
    version: u32,
    system_identifier: Option<u64>,
    files: Vec<ManifestFile>,
    /// Indices into `files`, sorted by path (for lookups and the duplicate check).
    by_path: Vec<u32>,
    wal_ranges: Vec<WalRange>,
    manifest_checksum: [u8; 32],
}

impl fmt::Debug for Manifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Manifest")
            .field("version", &self.version)
            .field("system_identifier", &self.system_identifier)
            .field("files", &self.files.len())
            .field("wal_ranges", &self.wal_ranges)
            .finish_non_exhaustive()
    }
}

impl Manifest {
    /// Parses and verifies `bytes` with the default [`Limits`].
    pub fn parse(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        Manifest::parse_with_limits(bytes, &Limits::default())
    }

    /// Parses and verifies `bytes` under `limits`.
    pub fn parse_with_limits(bytes: &[u8], limits: &Limits) -> Result<Manifest, ManifestError> {
        if bytes.len() > limits.max_manifest_bytes {
            return Err(ManifestError::TooLarge {
                size: bytes.len() as u64,
                limit: limits.max_manifest_bytes as u64,
            });
        }
        let (expected, hashed_len) = checksum_line(bytes)?;
        let actual = sha256(&bytes[..hashed_len]);
        if actual != expected {
            return Err(ManifestError::ChecksumMismatch {
                expected: hex::encode(expected),
                actual: hex::encode(actual),
            });
        }

        let mut ctx = Ctx { limits, pending: None, files: Vec::new(), wal_ranges: Vec::new() };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let top = TopSeed { ctx: &mut ctx }.deserialize(&mut de).and_then(|top| de.end().map(|()| top));
        let top = top.map_err(|e| {
            let problem = ctx.pending.take().unwrap_or_else(|| Problem::Json(strip_position(&e.to_string())));
            ManifestError::Invalid { line: e.line(), column: e.column(), problem }
        })?;

        let files = ctx.files;
        let mut by_path: Vec<u32> = (0..files.len() as u32).collect();
        by_path.sort_unstable_by(|&a, &b| files[a as usize].path.cmp(&files[b as usize].path));
        if let Some(pair) =
            by_path.windows(2).find(|w| files[w[0] as usize].path == files[w[1] as usize].path)
        {
            let (first, second) = (pair[0].min(pair[1]) as usize, pair[0].max(pair[1]) as usize);
            return Err(ManifestError::DuplicatePath { path: files[first].display_path(), first, second });
        }
        Ok(Manifest {
            version: top.version,
            system_identifier: top.system_identifier,
            files,
            by_path,
            wal_ranges: ctx.wal_ranges,
            manifest_checksum: expected,
        })
    }

    /// `PostgreSQL-Backup-Manifest-Version`: 1 or 2.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// `System-Identifier` (version 2).
    pub fn system_identifier(&self) -> Option<u64> {
        self.system_identifier
    }

    /// The files, in manifest order.
    pub fn files(&self) -> &[ManifestFile] {
        &self.files
    }

    /// The file listed under `path`.
    pub fn file(&self, path: &[u8]) -> Option<&ManifestFile> {
        let i = self.by_path.binary_search_by(|&i| (*self.files[i as usize].path).cmp(path)).ok()?;
        Some(&self.files[self.by_path[i] as usize])
    }

    /// `WAL-Ranges`, newest timeline first as the server writes them.
    pub fn wal_ranges(&self) -> &[WalRange] {
        &self.wal_ranges
    }

    /// The verified `Manifest-Checksum` (SHA-256).
    pub fn manifest_checksum(&self) -> &[u8; 32] {
        &self.manifest_checksum
    }

    /// The per-file checksum algorithm if every file uses the same one (None if mixed or no
    /// files).
    pub fn checksum_algorithm(&self) -> Option<ChecksumAlgorithm> {
        let first = self.files.first()?.checksum.algorithm();
        self.files.iter().all(|f| f.checksum.algorithm() == first).then_some(first)
    }

    /// Sum of all file sizes.
    pub fn total_size(&self) -> u64 {
        self.files.iter().map(|f| f.size).fold(0u64, u64::saturating_add)
    }
}

/// Collects a manifest arriving in pieces (CopyData of the manifest), refusing to grow past
/// the size limit; then [`parse`](ManifestBuffer::parse).
#[derive(Debug, Clone, Default)]
pub struct ManifestBuffer {
    bytes: Vec<u8>,
    limits: Limits,
}

impl ManifestBuffer {
    /// An empty buffer with the default [`Limits`].
    pub fn new() -> ManifestBuffer {
        ManifestBuffer::with_limits(Limits::default())
    }

    /// An empty buffer with `limits`.
    pub fn with_limits(limits: Limits) -> ManifestBuffer {
        ManifestBuffer { bytes: Vec::new(), limits }
    }

    /// Appends a piece; fails (without storing it) once the total would pass the limit.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), ManifestError> {
        let total = self.bytes.len() as u64 + piece.len() as u64;
        if total > self.limits.max_manifest_bytes as u64 {
            return Err(ManifestError::TooLarge {
                size: total,
                limit: self.limits.max_manifest_bytes as u64,
            });
        }
        self.bytes.extend_from_slice(piece);
        Ok(())
    }

    /// Bytes collected so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was collected.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The raw manifest (e.g. to store it as `backup_manifest`).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Parses and verifies what was collected.
    pub fn parse(&self) -> Result<Manifest, ManifestError> {
        Manifest::parse_with_limits(&self.bytes, &self.limits)
    }

    /// The raw bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

/// Finds the checksum line (`verify_manifest_checksum` in parse_manifest.c: everything up to
/// and including the second-to-last newline is hashed; the last line holds the checksum).
/// Returns the expected checksum and the number of hashed bytes.
fn checksum_line(bytes: &[u8]) -> Result<([u8; 32], usize), ManifestError> {
    let Some((&b'\n', body)) = bytes.split_last() else {
        return Err(ManifestError::Layout("the last line is not terminated by a newline"));
    };
    let Some(penultimate) = body.iter().rposition(|&b| b == b'\n') else {
        return Err(ManifestError::Layout("expected at least 2 lines"));
    };
    let line = &body[penultimate + 1..];
    let hex_part = line
        .strip_prefix(CHECKSUM_LINE_PREFIX)
        .and_then(|rest| rest.strip_suffix(b"\"}"))
        .filter(|h| h.len() == 64)
        .ok_or(ManifestError::Layout("the last line is not `\"Manifest-Checksum\": \"<64 hex digits>\"}`"))?;
    let mut expected = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut expected)
        .map_err(|_| ManifestError::Layout("the Manifest-Checksum is not 64 hex digits"))?;
    Ok((expected, penultimate + 1))
}

/// serde_json appends " at line L column C" to its messages; the position is reported apart.
fn strip_position(message: &str) -> String {
    if let Some(i) = message.rfind(" at line ") {
        let tail = &message[i + " at line ".len()..];
        let mut parts = tail.splitn(3, ' ');
        let ok = parts.next().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            && parts.next() == Some("column")
            && parts.next().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()));
        if ok {
            return message[..i].to_owned();
        }
    }
    message.to_owned()
}

fn short(text: &str) -> String {
    crate::checksum::truncate_to(text, 100)
}

// ===== serde plumbing =====
//
// The document is walked with seeds that share one context, so each file is validated and
// stored compactly as soon as its object ends (no intermediate copy of the whole list), and a
// typed `Problem` is kept beside the opaque serde error that carries the position.

struct Ctx<'l> {
    limits: &'l Limits,
    /// The typed problem behind the serde error being propagated.
    pending: Option<Problem>,
    files: Vec<ManifestFile>,
    wal_ranges: Vec<WalRange>,
}

impl Ctx<'_> {
    fn fail<E: de::Error>(&mut self, problem: Problem) -> E {
        let e = E::custom(&problem);
        self.pending = Some(problem);
        e
    }
}

struct Top {
    version: u32,
    system_identifier: Option<u64>,
}

/// A string that borrows from the input when it has no escapes.
struct StrSeed;

impl<'de> DeserializeSeed<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(StrSeed)
    }
}

impl<'de> Visitor<'de> for StrSeed {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_owned()))
    }
}

struct TopSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_, '_> {
    type Value = Top;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Top, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_, '_> {
    type Value = Top;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a backup manifest object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        let ctx = self.ctx;
        match map.next_key_seed(StrSeed)? {
            Some(key) if key == VERSION_KEY => {}
            _ => return Err(ctx.fail(Problem::VersionNotFirst)),
        }
        let version: u64 = map.next_value()?;
        let version = match version {
            1 | 2 => version as u32,
            other => return Err(ctx.fail(Problem::UnsupportedVersion(other))),
        };
        let mut system_identifier = None;
        let (mut files, mut ranges, mut checksum) = (false, false, false);
        while let Some(key) = map.next_key_seed(StrSeed)? {
            match &*key {
                "System-Identifier" => {
                    if version == 1 {
                        return Err(ctx.fail(Problem::SystemIdentifierInV1));
                    }
                    if system_identifier.is_some() {
                        return Err(ctx.fail(Problem::DuplicateField("System-Identifier")));
                    }
                    // serde_json reads integers up to u64::MAX exactly (never through f64).
                    system_identifier = Some(map.next_value::<u64>()?);
                }
                "Files" => {
                    if std::mem::replace(&mut files, true) {
                        return Err(ctx.fail(Problem::DuplicateField("Files")));
                    }
                    map.next_value_seed(FilesSeed { ctx: &mut *ctx })?;
                }
                "WAL-Ranges" => {
                    if std::mem::replace(&mut ranges, true) {
                        return Err(ctx.fail(Problem::DuplicateField("WAL-Ranges")));
                    }
                    map.next_value_seed(RangesSeed { ctx: &mut *ctx })?;
                }
                "Manifest-Checksum" => {
                    // Its value was checked on the raw bytes already.
                    map.next_value_seed(StrSeed)?;
                    checksum = true;
                    if map.next_key::<IgnoredAny>()?.is_some() {
                        return Err(ctx.fail(Problem::FieldAfterChecksum));
                    }
                    break;
                }
                VERSION_KEY => return Err(ctx.fail(Problem::DuplicateField(VERSION_KEY))),
                other => return Err(ctx.fail(Problem::UnknownField(short(other)))),
            }
        }
        for (present, name) in [(files, "Files"), (ranges, "WAL-Ranges"), (checksum, "Manifest-Checksum")] {
            if !present {
                return Err(ctx.fail(Problem::MissingField(name)));
            }
        }
        if version == 2 && system_identifier.is_none() {
            return Err(ctx.fail(Problem::MissingField("System-Identifier")));
        }
        Ok(Top { version, system_identifier })
    }
}

struct FilesSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for FilesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for FilesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of files")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        loop {
            let index = ctx.files.len();
            let mut path = None;
            let next = seq.next_element_seed(FileSeed { ctx: &mut *ctx, path: &mut path });
            match next {
                Ok(Some(file)) => {
                    // Indices are stored as u32 (`Manifest::by_path`).
                    let max = ctx.limits.max_files.min(u32::MAX as usize);
                    if index >= max {
                        return Err(ctx.fail(Problem::TooManyFiles(max)));
                    }
                    ctx.files.push(file);
                }
                Ok(None) => return Ok(()),
                Err(e) if ctx.pending.is_some() => return Err(e),
                Err(e) => {
                    let problem = FileProblem::Json(strip_position(&e.to_string()));
                    return Err(ctx.fail(file_problem(index, path.as_deref(), problem)));
                }
            }
        }
    }
}

fn file_problem(index: usize, path: Option<&[u8]>, problem: FileProblem) -> Problem {
    let path = match path {
        Some(p) => format!("\"{}\"", short(&display_path(p))),
        None => "path unknown".to_owned(),
    };
    Problem::File { index, path, problem }
}

struct FileSeed<'c, 'l, 'p> {
    ctx: &'c mut Ctx<'l>,
    /// The entry's path once known, for error messages.
    path: &'p mut Option<Vec<u8>>,
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_, '_, '_> {
    type Value = ManifestFile;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ManifestFile, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_, '_, '_> {
    type Value = ManifestFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ManifestFile, A::Error> {
        let FileSeed { ctx, path: known_path } = self;
        let index = ctx.files.len();
        let limits = ctx.limits;
        let mut path: Option<Cow<'de, str>> = None;
        let mut encoded: Option<Cow<'de, str>> = None;
        let mut size: Option<u64> = None;
        let mut last_modified: Option<Cow<'de, str>> = None;
        let mut algorithm: Option<Cow<'de, str>> = None;
        let mut checksum: Option<Cow<'de, str>> = None;

        macro_rules! fail {
            ($problem:expr) => {{
                let problem = file_problem(index, known_path.as_deref(), $problem);
                return Err(ctx.fail(problem));
            }};
        }
        macro_rules! once {
            ($slot:ident, $name:literal, $value:expr) => {{
                if $slot.is_some() {
                    fail!(FileProblem::DuplicateField($name));
                }
                $slot = Some($value);
            }};
        }

        while let Some(key) = map.next_key_seed(StrSeed)? {
            match &*key {
                "Path" => {
                    let v = map.next_value_seed(StrSeed)?;
                    *known_path = Some(v.as_bytes().to_vec());
                    once!(path, "Path", v);
                }
                "Encoded-Path" => {
                    let v = map.next_value_seed(StrSeed)?;
                    if known_path.is_none() {
                        *known_path = hex::decode(v.as_bytes()).ok();
                    }
                    once!(encoded, "Encoded-Path", v);
                }
                "Size" => {
                    let v = map.next_value::<u64>()?;
                    once!(size, "Size", v);
                }
                "Last-Modified" => {
                    let v = map.next_value_seed(StrSeed)?;
                    once!(last_modified, "Last-Modified", v);
                }
                "Checksum-Algorithm" => {
                    let v = map.next_value_seed(StrSeed)?;
                    once!(algorithm, "Checksum-Algorithm", v);
                }
                "Checksum" => {
                    let v = map.next_value_seed(StrSeed)?;
                    once!(checksum, "Checksum", v);
                }
                other => fail!(FileProblem::UnknownField(short(other))),
            }
        }

        let path: Vec<u8> = match (path, encoded) {
            (None, None) => fail!(FileProblem::MissingPath),
            (Some(_), Some(_)) => fail!(FileProblem::BothPaths),
            (Some(p), None) => p.into_owned().into_bytes(),
            (None, Some(e)) => match hex::decode(e.as_bytes()) {
                Ok(p) => p,
                Err(_) => fail!(FileProblem::BadEncodedPath),
            },
        };
        if let Err(p) = check_relative_path(&path, limits.max_path_len) {
            fail!(FileProblem::Path(p));
        }
        let Some(size) = size else { fail!(FileProblem::MissingSize) };
        if size > limits.max_file_size {
            fail!(FileProblem::SizeTooLarge { size, limit: limits.max_file_size });
        }
        let algorithm = match algorithm {
            None => None,
            Some(name) => match ChecksumAlgorithm::from_name(&name) {
                Some(a) => Some(a),
                None => fail!(FileProblem::UnknownAlgorithm(short(&name))),
            },
        };
        let checksum = match (algorithm, checksum) {
            (None, None) | (Some(ChecksumAlgorithm::None), None) => Checksum::none(),
            (None, Some(_)) => fail!(FileProblem::ChecksumWithoutAlgorithm),
            (Some(a), None) => fail!(FileProblem::AlgorithmWithoutChecksum(a)),
            (Some(a), Some(text)) => match Checksum::from_hex(a, &text) {
                Ok(c) => c,
                Err(e) => fail!(FileProblem::Checksum(e)),
            },
        };
        Ok(ManifestFile {
            path: path.into_boxed_slice(),
            size,
            last_modified: last_modified.map(|s| Box::from(&*s)),
            checksum,
        })
    }
}

struct RangesSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for RangesSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RangesSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of WAL ranges")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let ctx = self.ctx;
        loop {
            let index = ctx.wal_ranges.len();
            match seq.next_element_seed(RangeSeed { ctx: &mut *ctx }) {
                Ok(Some(range)) => {
                    if index >= ctx.limits.max_wal_ranges {
                        return Err(ctx.fail(Problem::TooManyWalRanges(ctx.limits.max_wal_ranges)));
                    }
                    ctx.wal_ranges.push(range);
                }
                Ok(None) => return Ok(()),
                Err(e) if ctx.pending.is_some() => return Err(e),
                Err(e) => {
                    let problem = WalRangeProblem::Json(strip_position(&e.to_string()));
                    return Err(ctx.fail(Problem::WalRange { index, problem }));
                }
            }
        }
    }
}

struct RangeSeed<'c, 'l> {
    ctx: &'c mut Ctx<'l>,
}

impl<'de> DeserializeSeed<'de> for RangeSeed<'_, '_> {
    type Value = WalRange;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<WalRange, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RangeSeed<'_, '_> {
    type Value = WalRange;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a WAL range object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WalRange, A::Error> {
        let ctx = self.ctx;
        let index = ctx.wal_ranges.len();
        let fail = |ctx: &mut Ctx<'_>, problem| ctx.fail::<A::Error>(Problem::WalRange { index, problem });
        let mut timeline: Option<u32> = None;
        let mut start: Option<Lsn> = None;
        let mut end: Option<Lsn> = None;
        while let Some(key) = map.next_key_seed(StrSeed)? {
            let (slot, name) = match &*key {
                "Timeline" => {
                    if timeline.is_some() {
                        return Err(fail(ctx, WalRangeProblem::DuplicateField("Timeline")));
                    }
                    let t = map.next_value::<u32>()?;
                    if t == 0 {
                        return Err(fail(ctx, WalRangeProblem::TimelineZero));
                    }
                    timeline = Some(t);
                    continue;
                }
                "Start-LSN" => (&mut start, "Start-LSN"),
                "End-LSN" => (&mut end, "End-LSN"),
                other => return Err(fail(ctx, WalRangeProblem::UnknownField(short(other)))),
            };
            if slot.is_some() {
                return Err(fail(ctx, WalRangeProblem::DuplicateField(name)));
            }
            let text = map.next_value_seed(StrSeed)?;
            match text.parse::<Lsn>().ok() {
                Some(lsn) => *slot = Some(lsn),
                None => return Err(fail(ctx, WalRangeProblem::BadLsn { field: name, value: short(&text) })),
            }
        }
        let timeline = timeline.ok_or_else(|| fail(ctx, WalRangeProblem::Missing("Timeline")))?;
        let start = start.ok_or_else(|| fail(ctx, WalRangeProblem::Missing("Start-LSN")))?;
        let end = end.ok_or_else(|| fail(ctx, WalRangeProblem::Missing("End-LSN")))?;
        Ok(WalRange { timeline, start, end })
    }
}
