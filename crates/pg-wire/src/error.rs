//! `ErrorResponse` and `NoticeResponse` bodies.
//!
//! Every field is kept, as bytes converted lossily to text: server messages are in the server's
//! encoding and need not be UTF-8 (postgres-protocol deprecated its `&str` accessor for that
//! reason). The SQLSTATE is what callers should match on, never the message text.

use std::fmt;

use bytes::Bytes;

/// The `S`/`V` severity of an error or notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `ERROR`
    Error,
    /// `FATAL`
    Fatal,
    /// `PANIC`
    Panic,
    /// `WARNING`
    Warning,
    /// `NOTICE`
    Notice,
    /// `DEBUG`
    Debug,
    /// `INFO`
    Info,
    /// `LOG`
    Log,
    /// Anything else (a localised `S` without a `V`).
    Other,
}

impl Severity {
    fn parse(s: &str) -> Self {
        match s {
            "ERROR" => Self::Error,
            "FATAL" => Self::Fatal,
            "PANIC" => Self::Panic,
            "WARNING" => Self::Warning,
            "NOTICE" => Self::Notice,
            "DEBUG" => Self::Debug,
            "INFO" => Self::Info,
            "LOG" => Self::Log,
            _ => Self::Other,
        }
    }
}

/// A parsed `ErrorResponse` (`E`) or `NoticeResponse` (`N`).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct DbError {
    /// `V` (non-localised severity, 9.6+), else `S`.
    pub severity: String,
    /// `S`: localised severity.
    pub severity_localized: String,
    /// `C`: the SQLSTATE code, e.g. `28P01`.
    pub code: String,
    /// `M`: the primary message.
    pub message: String,
    /// `D`
    pub detail: Option<String>,
    /// `H`
    pub hint: Option<String>,
    /// `P`: cursor position in the query.
    pub position: Option<String>,
    /// `p`: position in an internal query.
    pub internal_position: Option<String>,
    /// `q`: the internal query.
    pub internal_query: Option<String>,
    /// `W`: context (call stack).
    pub context: Option<String>,
    /// `s`: schema name.
    pub schema: Option<String>,
    /// `t`: table name.
    pub table: Option<String>,
    /// `c`: column name.
    pub column: Option<String>,
    /// `d`: data type name.
    pub datatype: Option<String>,
    /// `n`: constraint name.
    pub constraint: Option<String>,
    /// `F`: source file.
    pub file: Option<String>,
    /// `L`: source line.
    pub line: Option<String>,
    /// `R`: source routine.
    pub routine: Option<String>,
    /// Fields with a type byte this version does not know, kept as they came.
    pub other: Vec<(u8, String)>,
}

/// A malformed `ErrorResponse`/`NoticeResponse` body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed error/notice message: {0}")]
pub struct ErrorFieldsError(&'static str);

impl DbError {
    /// Parses the body of an `E` or `N` message: a sequence of (type byte, NUL-terminated
    /// string) pairs ended by a zero byte.
    pub fn parse(body: &Bytes) -> Result<Self, ErrorFieldsError> {
        let mut e = DbError::default();
        let mut rest = &body[..];
        loop {
            let Some((&kind, tail)) = rest.split_first() else {
                return Err(ErrorFieldsError("missing terminator"));
            };
            if kind == 0 {
                if !tail.is_empty() {
                    return Err(ErrorFieldsError("bytes after the terminator"));
                }
                break;
            }
            let nul = tail.iter().position(|&b| b == 0).ok_or(ErrorFieldsError("unterminated field"))?;
            let value = String::from_utf8_lossy(&tail[..nul]).into_owned();
            rest = &tail[nul + 1..];
            match kind {
                b'S' => e.severity_localized = value,
                b'V' => e.severity = value,
                b'C' => e.code = value,
                b'M' => e.message = value,
                b'D' => e.detail = Some(value),
                b'H' => e.hint = Some(value),
                b'P' => e.position = Some(value),
                b'p' => e.internal_position = Some(value),
                b'q' => e.internal_query = Some(value),
                b'W' => e.context = Some(value),
                b's' => e.schema = Some(value),
                b't' => e.table = Some(value),
                b'c' => e.column = Some(value),
                b'd' => e.datatype = Some(value),
                b'n' => e.constraint = Some(value),
                b'F' => e.file = Some(value),
                b'L' => e.line = Some(value),
                b'R' => e.routine = Some(value),
                other => e.other.push((other, value)),
            }
        }
        if e.severity.is_empty() {
            e.severity = e.severity_localized.clone();
        }
        Ok(e)
    }

    /// The severity, parsed.
    pub fn severity(&self) -> Severity {
        Severity::parse(&self.severity)
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (SQLSTATE {})", self.severity, self.message, self.code)?;
        if let Some(d) = &self.detail {
            write!(f, "; detail: {d}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "; hint: {h}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DbError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_field() {
        let body = Bytes::from_static(
            b"SERREUR\0VERROR\0C0A000\0Mcannot execute SQL commands in WAL sender\0Dd\0Hh\0Fwalsender.c\0L1\0Rexec_replication_command\0Zz\0\0",
        );
        let e = DbError::parse(&body).unwrap();
        assert_eq!(e.severity(), Severity::Error);
        assert_eq!(e.severity_localized, "ERREUR");
        assert_eq!(e.code, "0A000");
        assert_eq!(e.routine.as_deref(), Some("exec_replication_command"));
        assert_eq!(e.other, vec![(b'Z', "z".to_owned())]);
        assert_eq!(
            e.to_string(),
            "ERROR: cannot execute SQL commands in WAL sender (SQLSTATE 0A000); detail: d; hint: h"
        );
    }

    #[test]
    fn non_utf8_is_kept_lossily() {
        let e = DbError::parse(&Bytes::from_static(b"SFATAL\0M\xe9chec\0\0")).unwrap();
        assert_eq!(e.severity(), Severity::Fatal);
        assert_eq!(e.message, "\u{fffd}chec");
    }

    #[test]
    fn malformed_bodies_are_errors() {
        for b in [&b""[..], b"Mabc", b"Mabc\0", b"Mabc\0\0x"] {
            assert!(DbError::parse(&Bytes::copy_from_slice(b)).is_err(), "{b:?}");
        }
    }
}
