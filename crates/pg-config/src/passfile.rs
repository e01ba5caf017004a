//! The password file (libpq-pgpass.html): `hostname:port:database:username:password` lines,
//! `*` matching anything, `\:` and `\\` escapes, `#` comments, first match wins; ignored when
//! group or others can access it.
//!
//! Matching follows `passwordFromFile` and `pwdfMatchesString` in
//! src/interfaces/libpq/fe-connect.c. Reading is streaming with a bounded line length.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::resolve::Warning;
use crate::secret::Password;

/// Longest passfile line considered (64 KiB); longer lines are skipped with a warning.
pub const MAX_PASSFILE_LINE: usize = 64 * 1024;

/// The four keys a passfile line is matched against.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Lookup<'a> {
    pub(crate) host: &'a str,
    pub(crate) port: &'a str,
    pub(crate) dbname: &'a str,
    pub(crate) user: &'a str,
}

/// Looks a password up in `path`. A missing or unreadable file is silently no password (as
/// libpq); an insecure or non-regular one is ignored with a warning.
pub(crate) fn lookup(path: &Path, key: Lookup<'_>, warnings: &mut Vec<Warning>) -> Option<Password> {
    if key.dbname.is_empty() || key.user.is_empty() {
        return None;
    }
    let file = File::open(path).ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        push_once(warnings, Warning::PassfileNotPlainFile { path: path.to_owned() });
        return None;
    }
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        push_once(warnings, Warning::PassfileInsecure { path: path.to_owned(), mode: mode & 0o7777 });
        return None;
    }
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut line_no = 0usize;
    loop {
        line.clear();
        line_no += 1;
        match read_bounded_line(&mut reader, &mut line) {
            Ok(LineRead::Eof) => return None,
            Ok(LineRead::TooLong) => {
                push_once(warnings, Warning::PassfileLineTooLong { path: path.to_owned(), line: line_no });
                continue;
            }
            Ok(LineRead::Line) => {}
            Err(_) => return None,
        }
        if let Some(found) = match_line(&line, key) {
            line.fill(0);
            return match String::from_utf8(found) {
                Ok(p) => Some(Password::from(p)),
                Err(e) => {
                    let mut bytes = e.into_bytes();
                    bytes.fill(0);
                    push_once(warnings, Warning::PassfileNotUtf8 { path: path.to_owned(), line: line_no });
                    None
                }
            };
        }
    }
}

fn push_once(warnings: &mut Vec<Warning>, w: Warning) {
    if !warnings.contains(&w) {
        warnings.push(w);
    }
}

pub(crate) enum LineRead {
    Line,
    TooLong,
    Eof,
}

/// Reads one line (without the newline) into `line`, never holding more than
/// [`MAX_PASSFILE_LINE`] bytes: the rest of a longer line is skipped.
pub(crate) fn read_bounded_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> std::io::Result<LineRead> {
    let mut too_long = false;
    let mut any = false;
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(match (any, too_long) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong,
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(nl) => (&buf[..nl], Some(nl + 1)),
            None => (buf, None),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_PASSFILE_LINE {
                too_long = true;
                line.fill(0);
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let consumed = done.unwrap_or(buf.len());
        reader.consume(consumed);
        if done.is_some() {
            return Ok(if too_long { LineRead::TooLong } else { LineRead::Line });
        }
    }
}

/// Matches one line; returns the de-escaped password on a match.
pub(crate) fn match_line(line: &[u8], key: Lookup<'_>) -> Option<Vec<u8>> {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\r' | b'\n') {
        end -= 1;
    }
    let line = &line[..end];
    if line.is_empty() || line[0] == b'#' {
        return None;
    }
    let mut rest = line;
    for token in [key.host, key.port, key.dbname, key.user] {
        rest = match_field(rest, token.as_bytes())?;
    }
    // De-escape the password up to the first unescaped ':' (the rest of the line is ignored).
    let mut out = Vec::with_capacity(rest.len());
    let mut i = 0;
    while i < rest.len() && rest[i] != b':' {
        if rest[i] == b'\\' && i + 1 < rest.len() {
            i += 1;
        }
        out.push(rest[i]);
        i += 1;
    }
    Some(out)
}

/// One field against one token: `*` alone matches anything; otherwise byte-for-byte with
/// `\x` meaning a literal `x`, ending at an unescaped `:`. Returns what follows the `:`.
fn match_field<'a>(field: &'a [u8], token: &[u8]) -> Option<&'a [u8]> {
    if field.starts_with(b"*:") {
        return Some(&field[2..]);
    }
    let (mut i, mut t) = (0, 0);
    while i < field.len() {
        let mut escaped = false;
        if field[i] == b'\\' {
            i += 1;
            escaped = true;
        }
        let c = field.get(i).copied();
        if c == Some(b':') && t == token.len() && !escaped {
            return Some(&field[i + 1..]);
        }
        if t == token.len() || c != Some(token[t]) {
            return None;
        }
        i += 1;
        t += 1;
    }
    None
}

/// Escapes a value for a passfile field (`\` and `:` backslash-escaped).
pub fn escape_passfile_field(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c == '\\' || c == ':' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const KEY: Lookup<'static> = Lookup { host: "db.example", port: "5432", dbname: "app", user: "alice" };

    fn pw(line: &str, key: Lookup<'_>) -> Option<String> {
        match_line(line.as_bytes(), key).map(|p| String::from_utf8(p).unwrap())
    }

    #[test]
    fn matching_rules() {
        assert_eq!(pw("db.example:5432:app:alice:s3cret", KEY).as_deref(), Some("s3cret"));
        assert_eq!(pw("*:*:*:*:any", KEY).as_deref(), Some("any"));
        assert_eq!(pw("db.example:*:app:*:w", KEY).as_deref(), Some("w"));
        assert_eq!(pw("db.example:5433:app:alice:x", KEY), None);
        assert_eq!(pw("db.exampl:5432:app:alice:x", KEY), None);
        assert_eq!(pw("db.example.com:5432:app:alice:x", KEY), None);
        assert_eq!(pw("#db.example:5432:app:alice:x", KEY), None);
        assert_eq!(pw("", KEY), None);
        // `*` is a wildcard only as a whole field.
        assert_eq!(pw("db.*:5432:app:alice:x", KEY), None);
        // Escapes in keys and in the password; an unescaped ':' ends the password.
        let k = Lookup { host: "h:1", port: "5432", dbname: "d\\b", user: "u" };
        assert_eq!(pw("h\\:1:5432:d\\\\b:u:p\\:w\\\\d:ignored", k).as_deref(), Some("p:w\\d"));
        // libpq quirk: an unescaped ':' in the file still matches a ':' in the key.
        assert_eq!(pw("h:1:5432:d\\\\b:u:x", k).as_deref(), Some("x"));
        // CRLF line ends are stripped; a trailing backslash is kept literally.
        assert_eq!(pw("*:*:*:*:pw\\\r\n", KEY).as_deref(), Some("pw\\"));
        // Missing password field: empty password.
        assert_eq!(pw("*:*:*:alice:", KEY).as_deref(), Some(""));
        assert_eq!(pw("*:*:*:alice", KEY), None);
    }

    fn write_file(dir: &Path, name: &str, body: &str, mode: u32) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut f = File::create(&path).unwrap();
        f.write_all(body.as_bytes()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn file_first_match_wins() {
        let dir = tempfile::tempdir().unwrap();
        let body = "# comment\nother:5432:app:alice:no\ndb.example:*:*:alice:first\n*:*:*:*:second\n";
        let path = write_file(dir.path(), "pgpass", body, 0o600);
        let mut w = Vec::new();
        assert_eq!(lookup(&path, KEY, &mut w).unwrap().expose(), "first");
        assert!(w.is_empty());
        let other = Lookup { host: "zzz", ..KEY };
        assert_eq!(lookup(&path, other, &mut w).unwrap().expose(), "second");
        let no_db = Lookup { dbname: "", ..KEY };
        assert!(lookup(&path, no_db, &mut w).is_none());
    }

    #[test]
    fn insecure_file_is_ignored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o660, 0o644] {
            let path = write_file(dir.path(), "pgpass", "*:*:*:*:pw\n", mode);
            let mut w = Vec::new();
            assert!(lookup(&path, KEY, &mut w).is_none(), "{mode:o}");
            assert_eq!(w, vec![Warning::PassfileInsecure { path: path.clone(), mode }]);
            assert!(w[0].to_string().contains("group or world access"), "{}", w[0]);
        }
        let path = write_file(dir.path(), "pgpass", "*:*:*:*:pw\n", 0o400);
        assert_eq!(lookup(&path, KEY, &mut Vec::new()).unwrap().expose(), "pw");
    }

    #[test]
    fn missing_file_and_directory() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Vec::new();
        assert!(lookup(&dir.path().join("absent"), KEY, &mut w).is_none());
        assert!(w.is_empty());
        assert!(lookup(dir.path(), KEY, &mut w).is_none());
        assert!(matches!(w[..], [Warning::PassfileNotPlainFile { .. }]));
    }

    #[test]
    fn overlong_lines_are_skipped_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("*:*:*:*:{}\n", "x".repeat(MAX_PASSFILE_LINE + 10));
        let body = format!("{long}db.example:5432:app:alice:after\n");
        let path = write_file(dir.path(), "pgpass", &body, 0o600);
        let mut w = Vec::new();
        assert_eq!(lookup(&path, KEY, &mut w).unwrap().expose(), "after");
        assert_eq!(w, vec![Warning::PassfileLineTooLong { path, line: 1 }]);
    }

    #[test]
    fn escape_round_trips_through_matching() {
        let host = "we:ird\\host";
        let line =
            format!("{}:5432:app:alice:{}", escape_passfile_field(host), escape_passfile_field("p:a\\ss"));
        let k = Lookup { host, ..KEY };
        assert_eq!(pw(&line, k).as_deref(), Some("p:a\\ss"));
    }
}
