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
///
/// Each message is complete (it shows its cause: `to_string()` is what an abort reason or a log
/// line needs) and no variant returns that cause again from `source()`, so a chain printer
/// (`anyhow`'s `{:#}`) shows every cause once.
#[derive(Debug, thiserror::Error)]
pub enum PhysicalError {
    /// The options cannot be used with this server.
    #[error(transparent)]
    Options(#[from] command::OptionError),
    /// The connection failed (connect, authentication, a command, a lost connection).
    #[error(transparent)]
    Connection(pg_conn::Error),
    /// A reply of the server before the backup (`server_version`, `IDENTIFY_SYSTEM`, `SHOW`)
    /// that cannot be used.
    #[error("unusable answer from the server: {error}")]
    Reply {
        /// What is wrong with it.
        error: pg_wire::replication::ResultError,
    },
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
    #[error("base backup interrupted {at}: {error}")]
    Interrupted {
        /// Where in the backup (bytes of the response, archive, file).
        at: String,
        /// The connection error.
        error: Box<pg_conn::Error>,
    },
    /// The WAL streaming connection of stream mode failed (to connect, to create its slot, or
    /// in the middle of the stream).
    #[error("WAL streaming connection, {at}: {error}")]
    WalConnection {
        /// What it was doing, or how far it had got (`at 0/3000000`).
        at: String,
        /// The connection error.
        error: Box<pg_conn::Error>,
    },
    /// The WAL stream of stream mode failed: a server error (with its SQLSTATE and the position
    /// reached), the server ending the stream before the backup's end (a timeline switch), a
    /// malformed or out-of-order message.
    #[error("WAL streaming connection: {error}")]
    WalStream {
        /// What went wrong, and where in the WAL.
        error: pg_wire::replication::receiver::ReceiverError,
    },
    /// The WAL connection reached another cluster than the backup connection.
    #[error("the WAL connection reached system {wal}, the backup connection system {backup}")]
    OtherSystem {
        /// The backup connection's system identifier.
        backup: u64,
        /// The WAL connection's.
        wal: u64,
    },
    /// The stream is not a correct base backup.
    #[error("base backup: {error}")]
    Decode {
        /// The decoder's error (with its offset in the stream).
        error: pg_basebackup::DecodeError,
    },
    /// An archive member a correct backup cannot contain.
    #[error("base backup archive member {path:?}: {problem}")]
    Entry {
        /// The member's path in its archive.
        path: String,
        /// What is wrong with it.
        problem: EntryProblem,
    },
    /// A file whose body does not have the size its tar header announced.
    #[error("{file}: {received} bytes received, the tar header announced {announced}")]
    Size {
        /// The record.
        file: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        announced: u64,
    },
    /// A file does not match the manifest, or the manifest itself is wrong.
    #[error("backup_manifest verification failed: {0}")]
    Manifest(verify::ManifestFailure),
    /// The sink failed.
    #[error("writing the backup: {error}")]
    Sink {
        /// The sink's error.
        error: record_sink::SinkError,
    },
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

/// What is wrong with an archive member.
#[derive(Debug, thiserror::Error)]
pub enum EntryProblem {
    /// Its path cannot be a record's path.
    #[error("{0}")]
    Path(record_sink::RecordPathError),
    /// A tar entry type PostgreSQL never sends (only files, directories and symbolic links).
    #[error("tar type {0:?}, which PostgreSQL never sends")]
    TarType(char),
}

impl From<pg_basebackup::DecodeError> for PhysicalError {
    fn from(error: pg_basebackup::DecodeError) -> Self {
        Self::Decode { error }
    }
}

impl From<record_sink::SinkError> for PhysicalError {
    fn from(error: record_sink::SinkError) -> Self {
        Self::Sink { error }
    }
}

impl From<verify::ManifestFailure> for PhysicalError {
    fn from(failure: verify::ManifestFailure) -> Self {
        Self::Manifest(failure)
    }
}

impl PhysicalError {
    pub(crate) fn internal(what: &str) -> Self {
        Self::Internal(what.to_owned())
    }

    /// The SQLSTATE of the server's error, when the server sent one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Server { error, .. } => Some(error.code.as_str()),
            Self::Interrupted { error, .. } | Self::WalConnection { error, .. } => error.code(),
            Self::Connection(error) => error.code(),
            Self::WalStream {
                error: pg_wire::replication::receiver::ReceiverError::Server { error, .. },
            } => Some(error.code.as_str()),
            Self::Decode { error: pg_basebackup::DecodeError::Server(e) } => Some(e.code.as_str()),
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

#[cfg(test)]
mod tests {
    use pg_wire::replication::Lsn;
    use pg_wire::replication::receiver::ReceiverError;

    use super::*;

    #[test]
    fn a_server_error_on_the_wal_connection_keeps_its_sqlstate_and_position() {
        let error = Box::new(pg_wire::DbError {
            severity: "FATAL".into(),
            code: "57P01".into(),
            message: "terminating connection due to administrator command".into(),
            ..Default::default()
        });
        let e = PhysicalError::WalStream {
            error: ReceiverError::Server { error, at: Lsn(0x300_0040), started: true },
        };
        assert_eq!(e.code(), Some("57P01"));
        assert_eq!(
            e.to_string(),
            "WAL streaming connection: the server failed the WAL stream at 0/3000040: FATAL: terminating \
             connection due to administrator command (SQLSTATE 57P01)"
        );
        assert!(
            std::error::Error::source(&e).is_none(),
            "the cause is in the message, not again in source()"
        );
    }

    #[test]
    fn typed_failures_say_what_and_where() {
        let e = PhysicalError::Size { file: "/data/base/1/1259".into(), received: 10, announced: 8192 };
        assert_eq!(e.to_string(), "/data/base/1/1259: 10 bytes received, the tar header announced 8192");
        let e = PhysicalError::Entry { path: "dev/null".into(), problem: EntryProblem::TarType('3') };
        assert_eq!(
            e.to_string(),
            "base backup archive member \"dev/null\": tar type '3', which PostgreSQL never sends"
        );
        let e = PhysicalError::from(verify::ManifestFailure::Missing);
        assert_eq!(e.to_string(), "backup_manifest verification failed: the server sent no backup_manifest");
        let e = PhysicalError::OtherSystem { backup: 1, wal: 2 };
        assert_eq!(e.to_string(), "the WAL connection reached system 2, the backup connection system 1");
    }
}
