//! Connection errors: what failed, where (which server, which step), and the server's own
//! message and SQLSTATE when it sent one.

use std::fmt;
use std::io;

use pg_wire::DbError;
use pg_wire::startup::{StartupError, StartupFailure};

/// The step of a connection or session at which something failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Opening the socket.
    Connect,
    /// The SSL request or the TLS handshake.
    Tls,
    /// Startup and authentication.
    Authentication,
    /// A query or replication command.
    Query,
    /// A COPY stream.
    Copy,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Connect => "connect",
            Step::Tls => "TLS",
            Step::Authentication => "authentication",
            Step::Query => "query",
            Step::Copy => "COPY",
        })
    }
}

/// What went wrong.
#[derive(Debug)]
pub enum ErrorKind {
    /// The configuration could not be resolved.
    Config(pg_config::ConfigError),
    /// A socket error.
    Io(io::Error),
    /// The server closed the connection.
    Closed,
    /// The connect timeout expired.
    Timeout(std::time::Duration),
    /// TLS could not be set up or the handshake failed.
    Tls(String),
    /// The startup exchange failed (authentication refused, no password, …).
    Startup(StartupError),
    /// The server answered a query or command with an error.
    Db(Box<DbError>),
    /// The server sent something the protocol does not allow here.
    Protocol(String),
    /// The configuration asks for something this client does not do.
    Unsupported(String),
    /// Every target of a multi-host configuration failed (each error is kept).
    AllTargetsFailed(Vec<Error>),
}

/// A connection or session error. See [`Error::kind`], [`Error::code`], [`Error::db_error`].
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    step: Option<Step>,
    target: Option<String>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind) -> Self {
        Self { kind, step: None, target: None }
    }

    pub(crate) fn at(mut self, step: Step) -> Self {
        self.step.get_or_insert(step);
        self
    }

    pub(crate) fn on(mut self, target: &str) -> Self {
        self.target.get_or_insert_with(|| target.to_owned());
        self
    }

    pub(crate) fn io(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            Self::new(ErrorKind::Closed)
        } else {
            Self::new(ErrorKind::Io(e))
        }
    }

    pub(crate) fn protocol(what: impl Into<String>) -> Self {
        Self::new(ErrorKind::Protocol(what.into()))
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The step that failed, when known.
    pub fn step(&self) -> Option<Step> {
        self.step
    }

    /// The server the error concerns (`host "db", port 5432` or `socket "/run/…"`).
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }

    /// The server's error, when it sent one.
    pub fn db_error(&self) -> Option<&DbError> {
        match &self.kind {
            ErrorKind::Db(e) => Some(e),
            ErrorKind::Startup(e) => e.db_error(),
            ErrorKind::AllTargetsFailed(all) => all.last().and_then(Error::db_error),
            _ => None,
        }
    }

    /// The SQLSTATE of the server's error, when it sent one.
    pub fn code(&self) -> Option<&str> {
        self.db_error().map(|e| e.code.as_str())
    }

    /// For a refused startup: why the server refused (wrong password, pg_hba, unknown role…).
    pub fn startup_failure(&self) -> Option<StartupFailure> {
        match &self.kind {
            ErrorKind::Startup(e) => e.failure(),
            ErrorKind::AllTargetsFailed(all) => all.last().and_then(Error::startup_failure),
            _ => None,
        }
    }

    /// Whether the connection is unusable after this error.
    pub fn is_fatal(&self) -> bool {
        !matches!(self.kind, ErrorKind::Db(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let ErrorKind::AllTargetsFailed(all) = &self.kind {
            let parts: Vec<String> = all.iter().map(ToString::to_string).collect();
            return f.write_str(&parts.join("\n"));
        }
        match (&self.target, self.step) {
            (Some(t), Some(Step::Query | Step::Copy)) => write!(f, "{t}: ")?,
            (Some(t), Some(step)) => write!(f, "connection to server at {t} failed during {step}: ")?,
            (Some(t), None) => write!(f, "connection to server at {t} failed: ")?,
            (None, _) => {}
        }
        match &self.kind {
            ErrorKind::Config(e) => write!(f, "invalid connection settings: {e}"),
            ErrorKind::Io(e) => write!(f, "{e}"),
            ErrorKind::Closed => f.write_str("the server closed the connection unexpectedly"),
            ErrorKind::Timeout(d) => write!(f, "timeout expired after {} s", d.as_secs_f32()),
            ErrorKind::Tls(e) => write!(f, "{e}"),
            ErrorKind::Startup(StartupError::Server(e)) => write_db(f, e),
            ErrorKind::Startup(e) => write!(f, "{e}"),
            ErrorKind::Db(e) => write_db(f, e),
            ErrorKind::Protocol(e) => write!(f, "protocol violation: {e}"),
            ErrorKind::Unsupported(e) => write!(f, "{e}"),
            ErrorKind::AllTargetsFailed(_) => unreachable!("handled above"),
        }
    }
}

fn write_db(f: &mut fmt::Formatter<'_>, e: &DbError) -> fmt::Result {
    write!(f, "{}: {} (SQLSTATE {})", e.severity, e.message, e.code)?;
    if let Some(d) = &e.detail {
        write!(f, "\nDETAIL: {d}")?;
    }
    if let Some(h) = &e.hint {
        write!(f, "\nHINT: {h}")?;
    }
    Ok(())
}

/// The message shows every cause (the server's error, the socket error, the configuration
/// problem), so `source()` returns none of them again: a chain printer (`anyhow`'s `{:#}`)
/// shows each once. The causes stay reachable, typed, through [`Error::kind`].
impl std::error::Error for Error {}
