//! The harness's error type.

use std::path::PathBuf;

/// Everything that can go wrong while providing a test cluster.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process operation failed.
    #[error("{what}: {error}")]
    Io {
        /// What the harness was doing, with the path involved.
        what: String,
        /// The underlying error.
        error: std::io::Error,
    },
    /// The server binaries of a selected major are not installed.
    #[error("PostgreSQL {major} server binaries not found in {}: run scripts/setup-postgres", dir.display())]
    MissingServer {
        /// The PostgreSQL major version.
        major: u32,
        /// Where they were expected.
        dir: PathBuf,
    },
    /// A client tool is not installed.
    #[error("{name}{} not found (looked in {}): run scripts/setup-postgres", of_major(*major), list(dirs))]
    MissingTool {
        /// The tool's file name, e.g. `pg_verifybackup`.
        name: String,
        /// The major it must match, if any.
        major: Option<u32>,
        /// The directories searched.
        dirs: Vec<PathBuf>,
    },
    /// The options cannot work together (e.g. cert authentication without TLS).
    #[error("invalid test cluster options: {0}")]
    Config(String),
    /// `initdb` or `postgres` failed or did not become ready.
    #[error("PostgreSQL {major} in {}: {message}\n--- server output ---\n{log}", dir.display())]
    Server {
        /// The PostgreSQL major version.
        major: u32,
        /// The data directory.
        dir: PathBuf,
        /// What failed.
        message: String,
        /// The end of the server's (or initdb's) output.
        log: String,
    },
    /// `psql` reported an error running SQL.
    #[error("psql failed ({status}) running {query:?}: {stderr}")]
    Sql {
        /// The SQL text, shortened.
        query: String,
        /// psql's exit status.
        status: String,
        /// psql's standard error.
        stderr: String,
    },
    /// Generating TLS keys or certificates failed.
    #[error("generating TLS material: {0}")]
    Tls(rcgen::Error),
    /// The Docker backend failed.
    #[error("docker backend: {0}")]
    Docker(String),
}

fn of_major(major: Option<u32>) -> String {
    major.map(|m| format!(" of PostgreSQL {m}")).unwrap_or_default()
}

fn list(dirs: &[PathBuf]) -> String {
    dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The harness's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an `io::Error` with a description of what was being done.
pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |error| Error::Io { what, error }
}

// The message shows the rcgen error, so it is not returned again from `source()`.
impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Self::Tls(e)
    }
}
