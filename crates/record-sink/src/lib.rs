//! The record model and the sink interface shared by every backup source and every sink.
//!
//! A backup is a sequence of [`Record`]s: a regular file with a streamed body, a directory, or
//! a symbolic link. Sources (the physical base-backup source, the logical `pg_dump` source, the
//! catalog collector that writes `/manifest.json`) push records into a [`RecordSink`]; sinks
//! (a directory a `postgres` server starts from, the Plakar importer, the [`NullSink`] that only
//! counts) decide what to do with them.
//!
//! The protocol is a small state machine driven by the source:
//!
//! ```text
//! ( record(dir | symlink)
//! | record(file) -> Body  -> data(chunk)* -> end_file()
//! | record(file) -> Skip  -> end_file()                   )*
//! finish() | abort(reason)
//! ```
//!
//! [`RecordSink::record`] returns [`Wants::Skip`] when the sink does not need the body of a file
//! (Plakar acknowledges a record it found in its cache without opening it). The source still
//! reads and verifies those bytes from its own stream, it just does not hand them over.
//!
//! Nothing is durable until [`RecordSink::finish`] returns: a source that fails calls
//! [`RecordSink::abort`], and a sink must never present an aborted backup as a good one.
//!
//! Every method is `async` and takes `&mut self`: a sink applies backpressure simply by not
//! returning, which is what keeps a backup's memory bounded whatever the size of the database.

use std::fmt;
use std::future::Future;
use std::time::SystemTime;

use bytes::Bytes;

mod null;
mod path;

pub use null::{NullSink, NullSinkStats};
pub use path::{RecordPath, RecordPathError};

/// What a record is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file whose body follows through [`RecordSink::data`].
    File {
        /// The size announced by the source, if known in advance (a tar header knows it, a
        /// `pg_dump` pipe does not).
        size: Option<u64>,
    },
    /// A directory.
    Directory,
    /// A symbolic link.
    Symlink {
        /// Where the link points, exactly as the source reported it.
        target: String,
    },
}

/// File metadata carried by a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Permission bits (`0o7777` at most: setuid/setgid/sticky and `rwx` for user, group,
    /// other). The type of the entry is [`EntryKind`], never mode bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: SystemTime,
    /// Owner's numeric user id, if the source knows it.
    pub uid: Option<u32>,
    /// Owner's numeric group id, if the source knows it.
    pub gid: Option<u32>,
}

impl Metadata {
    /// Metadata for a file the backup itself produces (`/manifest.json`, a dump): mode 0600,
    /// modified now, no owner.
    pub fn synthetic_file() -> Self {
        Self { mode: 0o600, mtime: SystemTime::now(), uid: None, gid: None }
    }
}

/// One entry of a backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where the entry lives in the backup, e.g. `/data/base/1/1259`.
    pub path: RecordPath,
    /// What the entry is.
    pub kind: EntryKind,
    /// Its metadata.
    pub meta: Metadata,
}

/// Whether a sink wants the body of a file record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wants {
    /// Send the body through [`RecordSink::data`].
    Body,
    /// Do not send the body; call [`RecordSink::end_file`] when the source is past it.
    Skip,
}

/// A failure inside a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error on the sink's side, with the path it concerned.
    #[error("{path}: {source}")]
    Io {
        /// The record (or sink location) the error concerns.
        path: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The source broke the record protocol (data without a file, a second `record` before
    /// `end_file`, …). This is a bug in the source.
    #[error("record protocol violated: {0}")]
    Protocol(String),
    /// The sink refuses the backup (a non-empty target directory, a path outside its scope, …).
    #[error("{0}")]
    Refused(String),
    /// The consumer behind the sink went away (Plakar cancelled, a pipe closed).
    #[error("the consumer of the backup went away: {0}")]
    Closed(String),
}

/// Where every source writes its records.
///
/// See the [crate documentation](crate) for the order in which the methods are called.
pub trait RecordSink: Send {
    /// Announces a record. For a file, says whether the body is wanted; for a directory or a
    /// symlink the answer is ignored.
    fn record(&mut self, record: &Record) -> impl Future<Output = Result<Wants, SinkError>> + Send;

    /// Hands over the next chunk of the current file's body.
    fn data(&mut self, chunk: Bytes) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// Ends the current file.
    fn end_file(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The backup is complete and verified: make it durable.
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The backup failed: leave nothing that could be taken for a good backup.
    fn abort(&mut self, reason: &str) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            EntryKind::File { size: Some(n) } => write!(f, "file {} ({n} bytes)", self.path),
            EntryKind::File { size: None } => write!(f, "file {}", self.path),
            EntryKind::Directory => write!(f, "directory {}", self.path),
            EntryKind::Symlink { target } => write!(f, "symlink {} -> {target}", self.path),
        }
    }
}
