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
//! | record(file) -> Body  -> data(chunk)* [-> Stop] -> end_file()
//! | record(file) -> Skip  -> end_file()                            )*
//! finish() | abort(reason)
//! ```
//!
//! - [`RecordSink::record`] resolves when the consumer has decided whether it wants the body of
//!   a file: [`Wants::Skip`] when it does not (Plakar acknowledges a record it found in its
//!   cache, or a dry run, without opening it). A source whose body is expensive to produce (a
//!   `pg_dump` child) starts producing it only after [`Wants::Body`].
//! - [`RecordSink::data`] returns [`Flow::Stop`] when the consumer stopped reading the file (Plakar
//!   cancelled its `Open` stream). That is the consumer's choice, not a failure: the source sends
//!   nothing more of that body, still reads and verifies the rest of it from its own stream,
//!   and then calls [`RecordSink::end_file`].
//! - [`RecordSink::end_file`] resolves when the consumer is done with the record (Plakar acked
//!   it, or a buffering sink took ownership of the bytes). A source that must learn whether a
//!   body was complete (a child's exit status) does so *before* `end_file`, and fails instead of
//!   ending the file if it was not.
//!
//! Sources ([`Source`]) only emit records and return a result. The lifecycle of the sink
//! belongs to whoever runs the backup (the `backup-plan` orchestrator): nothing is durable until
//! [`RecordSink::finish`] returns, which is called only after every source succeeded; on the
//! first failure (or a cancellation) [`RecordSink::abort`] is called instead, and a sink must
//! never present an aborted backup as a good one.
//!
//! # Metadata and cache safety
//!
//! A consumer may reuse the content it stored for an earlier backup when a record's metadata is
//! equal to the earlier one's (Plakar's VFS cache compares name, size, mode, mtime, dev, ino,
//! uid, gid). Sources follow two rules so that reuse never returns stale content:
//!
//! - **Synthetic records** (`/manifest.json`, dumps): [`Metadata::synthetic_file`] gives the
//!   time the record was produced as its mtime and the size is unknown (`None`), so two backups
//!   never describe such a file identically.
//! - **Files of a data directory**: the server's tar header gives the mtime with one-second
//!   resolution, and PostgreSQL rewrites pages in place without changing a file's size. A file
//!   whose mtime is not older than the backup's start (minus a safety margin) may have changed
//!   within that second after being read, so the source gives it a per-backup `dev`/`ino`
//!   ([`Metadata::mark_unstable`]): the next backup's record cannot be equal to it, and its
//!   content is read again. Older files keep `dev`/`ino` unset and may be reused.
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
pub use path::{RecordPath, RecordPathError, decode_name, decode_relative, encode_name, is_encoded_name};

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
    /// A device number for the consumer's cache comparison (see the crate documentation's cache
    /// rule); `None` for records that may be matched by their other fields.
    pub dev: Option<u64>,
    /// An inode number for the consumer's cache comparison; set together with [`Metadata::dev`].
    pub ino: Option<u64>,
}

impl Metadata {
    /// Metadata of an entry with these permission bits and mtime, no owner and no cache marks.
    pub fn new(mode: u32, mtime: SystemTime) -> Self {
        Self { mode, mtime, uid: None, gid: None, dev: None, ino: None }
    }

    /// Metadata for a file the backup itself produces (`/manifest.json`, a dump): mode 0600,
    /// modified now (the moment its record is produced), no owner. With an unknown size, two
    /// backups never describe such a file identically, so no consumer reuses an old copy.
    pub fn synthetic_file() -> Self {
        Self::new(0o600, SystemTime::now())
    }

    /// Marks the entry as possibly changed after it was read (see the crate documentation's
    /// cache rule): `dev` and `ino` become values unique to this backup and this entry, so a
    /// later backup's record of the same file never compares equal to this one.
    pub fn mark_unstable(&mut self, backup_id: u64, entry_index: u64) {
        self.dev = Some(backup_id);
        self.ino = Some(entry_index);
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

/// Whether the consumer still reads the current file's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Send the next chunk.
    Continue,
    /// The consumer stopped reading this file: send nothing more of it, then call
    /// [`RecordSink::end_file`] once the source is past the body.
    Stop,
}

/// A failure inside a sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// An I/O error on the sink's side, with the path it concerned.
    #[error("{path}: {error}")]
    Io {
        /// The record (or sink location) the error concerns.
        path: String,
        /// The underlying error.
        error: std::io::Error,
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

/// Name of the file that marks an unfinished or aborted backup kept on disk (the directory
/// and tar sinks write it; its text is [`abort_marker_text`] once a backup was aborted).
pub const INCOMPLETE_MARKER: &str = "PGPLAKAR_BACKUP_INCOMPLETE";

/// What [`INCOMPLETE_MARKER`] says of a backup aborted for `reason` and kept on disk.
pub fn abort_marker_text(reason: &str) -> String {
    format!("This directory is an ABORTED backup written by pg_plakar. Do not use it.\nReason: {reason}\n")
}

/// Where every source writes its records.
///
/// See the [crate documentation](crate) for the order in which the methods are called.
pub trait RecordSink: Send {
    /// Announces a record. For a file, says whether the body is wanted; for a directory or a
    /// symlink the answer is ignored.
    fn record(&mut self, record: &Record) -> impl Future<Output = Result<Wants, SinkError>> + Send;

    /// Hands over the next chunk of the current file's body; [`Flow::Stop`] when the consumer
    /// wants no more of it.
    fn data(&mut self, chunk: Bytes) -> impl Future<Output = Result<Flow, SinkError>> + Send;

    /// Ends the current file; resolves when the consumer is done with it.
    fn end_file(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The backup is complete and verified: make it durable. Called by the orchestrator only,
    /// after every source succeeded.
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send;

    /// The backup failed: leave nothing that could be taken for a good backup. Called by the
    /// orchestrator only.
    fn abort(&mut self, reason: &str) -> impl Future<Output = Result<(), SinkError>> + Send;
}

impl<S: RecordSink + ?Sized> RecordSink for &mut S {
    fn record(&mut self, record: &Record) -> impl Future<Output = Result<Wants, SinkError>> + Send {
        (**self).record(record)
    }
    fn data(&mut self, chunk: Bytes) -> impl Future<Output = Result<Flow, SinkError>> + Send {
        (**self).data(chunk)
    }
    fn end_file(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).end_file()
    }
    fn finish(&mut self) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).finish()
    }
    fn abort(&mut self, reason: &str) -> impl Future<Output = Result<(), SinkError>> + Send {
        (**self).abort(reason)
    }
}

/// Something that turns a server into records: the physical base backup, a `pg_dump`, the
/// `/manifest.json` collector.
///
/// A source only emits records into the sink it is given and returns a result; it never calls
/// [`RecordSink::finish`] or [`RecordSink::abort`] (the orchestrator running the backup does).
/// Dropping the future returned by [`Source::run`] cancels the source: it must then leave
/// nothing behind (children killed, connections and their temporary slots closed, temporary
/// files removed).
pub trait Source: Send {
    /// What a successful run reports.
    type Report: Send;
    /// Why a run failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// A short description for progress and error messages ("base backup", "pg_dump of db").
    fn describe(&self) -> String;

    /// Emits this source's records into `sink`.
    fn run<S: RecordSink>(
        &mut self,
        sink: &mut S,
    ) -> impl Future<Output = Result<Self::Report, Self::Error>> + Send;
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
