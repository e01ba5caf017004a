//! The physical backup source (`postgres+bin://`): a base backup taken with the project's own
//! replication client, decoded by [`pg_basebackup`], checked file by file against the server's
//! `backup_manifest`, and written as records into a [`record_sink::RecordSink`].
//!
//! Records: `/data/…` for the main data directory (with `backup_label`, `pg_wal/…` and
//! `backup_manifest`) and `/tablespaces/<oid>/…` for each extra tablespace; the
//! `/data/pg_tblspc/<oid>` links point at `../../tablespaces/<oid>`, the copy in the backup, so
//! a restored cluster never uses the source's tablespace directories.
//!
//! Entry point: [`backup`].

pub mod command;
pub mod pipeline;
pub mod source;
mod stream;
pub mod verify;
pub mod wal;

pub use command::{BackupOptions, Checkpoint, Compression, ManifestChecksums, WalMethod};
pub use pipeline::{BackupSummary, Pipeline};
pub use source::{BackupReport, CLIENT_NAME, RunOptions, ServerFacts, backup};

/// Why a physical backup failed.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// The options cannot be used with this server.
    #[error(transparent)]
    Options(#[from] command::OptionError),
    /// The connection failed (connect, authentication, a command, a lost connection).
    #[error(transparent)]
    Connection(pg_conn::Error),
    /// The stream is not a correct base backup, or the server reported an error in it.
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
}
