//! Errors of the logical backup and restore.

use record_sink::SinkError;

/// Everything that can go wrong in a logical backup or restore. Messages never contain a
/// password; a child's stderr appears as a bounded tail, cut on a UTF-8 boundary.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogicalError {
    /// An option is invalid.
    #[error("option {option}: {message}")]
    Option {
        /// The option's key.
        option: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A connection the backup or restore makes itself (server version, probes) failed.
    #[error("{what}: {error}")]
    Connect {
        /// What the connection was for.
        what: String,
        /// The connection error (with SQLSTATE when the server sent one).
        error: pg_conn::Error,
    },
    /// No suitable client tools.
    #[error("{0}")]
    Tools(String),
    /// A temporary file (passfile, inline PEM) could not be written.
    #[error("{what}: {error}")]
    TempFile {
        /// Which file.
        what: String,
        /// The error.
        error: std::io::Error,
    },
    /// A child could not be started or supervised.
    #[error("{tool}: {error}")]
    Spawn {
        /// The tool's path.
        tool: String,
        /// The error.
        error: std::io::Error,
    },
    /// A child ended badly: non-zero exit, a signal, or a stream cut short.
    #[error("{what} failed ({status}){}", tail_suffix(stderr_tail))]
    ChildFailed {
        /// What the child was doing ("pg_dump of database \"app\"").
        what: String,
        /// How it ended ("exit status 1", "killed by signal 9").
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The sink failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// A restore cannot proceed as asked (missing target database, ordering, names).
    #[error("{0}")]
    Restore(String),
}

fn tail_suffix(tail: &str) -> String {
    if tail.trim().is_empty() { String::new() } else { format!(": {}", tail.trim_end()) }
}
