//! The physical backup source (`postgres+bin://`): a base backup taken with the project's own
//! replication client, decoded by [`pg_basebackup`], checked file by file against the server's
//! `backup_manifest`, and written as records into a [`record_sink::RecordSink`].
//!
//! Records: `/data/…` for the main data directory (with `backup_label`, `pg_wal/…` and
//! `backup_manifest`) and `/tablespaces/<oid>/…` for each extra tablespace; the
//! `/data/pg_tblspc/<oid>` links point at `../../tablespaces/<oid>`, the copy in the backup, so
//! a restored cluster never uses the source's tablespace directories.
//!
//! Entry points: [`PhysicalSource`] (a [`record_sink::Source`] for the `backup-plan`
//! orchestrator, which owns the sink's `finish`/`abort`) and [`backup`], the same without the
//! wrapper.

pub mod command;
pub mod pipeline;
pub mod replay;
pub mod source;
mod stream;
pub mod verify;
pub mod wal;

pub use command::{BackupOptions, Checkpoint, Compression, ManifestChecksums, WalMethod};
pub use pipeline::{BackupSummary, Pipeline};
pub use replay::{ReplaySource, replay};
pub use source::{BackupReport, CLIENT_NAME, PhysicalSource, RunOptions, ServerFacts, backup};

/// Why a physical backup failed.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// The options cannot be used with this server.
    #[error(transparent)]
    Options(#[from] command::OptionError),
    /// The connection failed (connect, authentication, a command, a lost connection).
    #[error(transparent)]
    Connection(pg_conn::Error),
    /// The server failed the backup with an error (`XX001` page checksum failures, `42501` an
    /// unreadable file, `57P01` a terminated walsender, …); the warnings it sent before are kept,
    /// since they say what went wrong (protocol.md §4.4).
    #[error("the server failed the base backup {at}: {error}{}", warnings_suffix(warnings))]
    Server {
        /// The server's error.
        error: Box<pg_wire::DbError>,
        /// Where in the backup it arrived.
        at: String,
        /// The warnings the server sent during the backup (checksum failures, …).
        warnings: Vec<String>,
    },
    /// The connection was lost (or failed) in the middle of the backup.
    #[error("base backup interrupted {at}: {source}")]
    Interrupted {
        /// Where in the backup (bytes of the response, archive, file).
        at: String,
        /// The connection error.
        source: Box<pg_conn::Error>,
    },
    /// The WAL streaming connection of stream mode failed (to connect, to create its slot, or
    /// in the middle of the stream).
    #[error("WAL streaming connection, {at}: {source}")]
    WalConnection {
        /// What it was doing, or how far it had got (`at 0/3000000`).
        at: String,
        /// The connection error.
        source: Box<pg_conn::Error>,
    },
    /// The stream is not a correct base backup.
    #[error("base backup: {0}")]
    Decode(#[from] pg_basebackup::DecodeError),
    /// Something in the stream that a correct backup cannot contain.
    #[error("base backup stream: {0}")]
    Stream(String),
    /// A file does not match the manifest, or the manifest itself is wrong.
    #[error("backup_manifest verification failed: {0}")]
    Manifest(String),
    /// The sink failed.
    #[error("writing the backup: {0}")]
    Sink(#[from] record_sink::SinkError),
    /// The WAL spool failed.
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    /// The recording could not be written.
    #[error("recording: {0}")]
    Recording(String),
    /// A bug: the pipeline was driven out of order.
    #[error("internal error: {0}")]
    Internal(String),
}

impl PhysicalError {
    pub(crate) fn internal(what: &str) -> Self {
        Self::Internal(what.to_owned())
    }

    /// The SQLSTATE of the server's error, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { error, .. } => Some(error.code.as_str()),
            Self::Interrupted { source, .. } | Self::WalConnection { source, .. } => source.code(),
            Self::Connection(source) => source.code(),
            Self::Decode(pg_basebackup::DecodeError::Server(e)) => Some(e.code.as_str()),
            _ => None,
        }
    }
}

/// How many server warnings an error message shows.
const WARNINGS_SHOWN: usize = 8;

fn warnings_suffix(warnings: &[String]) -> String {
    if warnings.is_empty() {
        return String::new();
    }
    let shown: Vec<&str> = warnings.iter().take(WARNINGS_SHOWN).map(String::as_str).collect();
    let more = warnings.len() - shown.len();
    let tail = if more > 0 { format!("; and {more} more") } else { String::new() };
    format!("; the server warned: {}{tail}", shown.join("; "))
}
