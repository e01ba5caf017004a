//! Manifest paths: raw bytes (a path need not be UTF-8), their display form and safety rules.

use std::fmt::Write as _;

/// A printable form of a path: UTF-8 as is, other bytes as `\xNN`; quotes and control
/// characters escaped so that a hostile name cannot forge log lines.
pub fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len().min(256));
    for chunk in path.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => {
                    let _ = write!(out, "{}", c.escape_default());
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Why a path cannot be a file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathProblem {
    /// The empty path.
    #[error("empty path")]
    Empty,
    /// Longer than the limit (PostgreSQL's MAXPGPATH is 1024).
    #[error("path is {len} bytes long, more than the limit of {limit}")]
    TooLong {
        /// Length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Starts with `/`.
    #[error("absolute path")]
    Absolute,
    /// An empty, `.` or `..` component, or a trailing `/`.
    #[error("path has an empty, \".\" or \"..\" component")]
    BadComponent,
    /// Contains a NUL byte.
    #[error("path contains a NUL byte")]
    Nul,
}

/// Checks that `path` is a plain relative path inside the backup: not empty, not absolute,
/// no `.`/`..`/empty components, no NUL, at most `max_len` bytes. Joining it to a directory
/// therefore never leaves that directory.
pub fn check_relative_path(path: &[u8], max_len: usize) -> Result<(), PathProblem> {
    if path.is_empty() {
        return Err(PathProblem::Empty);
    }
    if path.len() > max_len {
        return Err(PathProblem::TooLong { len: path.len(), limit: max_len });
    }
    if path.contains(&0) {
        return Err(PathProblem::Nul);
    }
    if path[0] == b'/' {
        return Err(PathProblem::Absolute);
    }
    if path.split(|&b| b == b'/').any(|c| c.is_empty() || c == b"." || c == b"..") {
        return Err(PathProblem::BadComponent);
    }
    Ok(())
}

/// Whether `path` is `prefix` or lies under it (`should_ignore_relpath` in pg_verifybackup.c).
pub(crate) fn is_under(path: &[u8], prefix: &[u8]) -> bool {
    path.starts_with(prefix) && (path.len() == prefix.len() || path[prefix.len()] == b'/')
}

/// Whether `path` is a WAL segment in `pg_wal/` (24 hex digits, optionally `.partial`): WAL
/// segments travel in a base backup but are never listed in its manifest.
pub fn is_wal_segment_path(path: &[u8]) -> bool {
    let Some(name) = path.strip_prefix(b"pg_wal/") else { return false };
    let name = name.strip_suffix(b".partial").unwrap_or(name);
    name.len() == 24 && name.iter().all(u8::is_ascii_hexdigit)
}
