//! Record names of a logical backup, and the reversible mapping from database names.
//!
//! A record name is one clean path component below `/`, whatever the database is called. A
//! database name becomes a file name by percent-encoding (`%XX`, upper-case hex, of each byte):
//!
//! - `%` and `/` (which would otherwise be ambiguous or nest the record),
//! - control characters (`0x00`–`0x1F`, `0x7F`: a newline in a name stays on one line),
//! - a leading `.` (so no name becomes `.`, `..` or a hidden file),
//! - the first digit of a name that starts with five digits and a `-` (so no name of this
//!   layout is mistaken for the Go plugin's numbered `NNNNN-<db>.dump` layout),
//! - every byte of an invalid UTF-8 sequence.
//!
//! Everything else, non-ASCII letters included, is kept as is: `my db` is `/my db.dump`,
//! `café` is `/café.dump`, `a/b` is `/a%2Fb.dump`, `..` is `/%2E..dump`. Decoding is the exact
//! inverse; a name holding a `%` not followed by two hex digits was not written by this
//! mapping and is refused.

use std::fmt;

/// The record holding `pg_dumpall --globals-only` (roles, tablespaces) for a one-database
/// backup.
pub const GLOBALS_FILE: &str = "globals.sql";
/// The record holding the plain `pg_dumpall` script of a whole-cluster backup.
pub const ALL_FILE: &str = "all.sql";
/// The cluster metadata record (written by the orchestrator, read but not restored here).
pub const MANIFEST_FILE: &str = "manifest.json";
/// The suffix of a `pg_dump -Fc` archive record.
pub const DUMP_SUFFIX: &str = ".dump";
/// The Go plugin's later globals record.
pub const GO_GLOBALS_FILE: &str = "00000-globals.sql";

/// Encodes a database name as a record file-name stem (see the [module docs](self)).
pub fn encode_db_name(name: &[u8]) -> String {
    let mut out = String::with_capacity(name.len());
    let numbered = name.len() >= 6 && name[..5].iter().all(u8::is_ascii_digit) && name[5] == b'-';
    let mut first = true;
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            let escape =
                c == '%' || c == '/' || c.is_ascii_control() || (first && c == '.') || (first && numbered);
            if escape {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_hex(&mut out, b);
                }
            } else {
                out.push(c);
            }
            first = false;
        }
        for &b in chunk.invalid() {
            push_hex(&mut out, b);
            first = false;
        }
    }
    out
}

fn push_hex(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// A record file-name stem that is not a percent-encoding this crate writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record name {name:?} is not an encoded database name: {reason}")]
pub struct NameError {
    /// The offending stem.
    pub name: String,
    /// What is wrong.
    pub reason: &'static str,
}

/// Decodes a record file-name stem back into the database name's bytes.
pub fn decode_db_name(stem: &str) -> Result<Vec<u8>, NameError> {
    let err = |reason| NameError { name: stem.to_owned(), reason };
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or_else(|| err("`%` not followed by two hex digits"))?;
            let hi = hex_val(hex[0]).ok_or_else(|| err("`%` not followed by two hex digits"))?;
            let lo = hex_val(hex[1]).ok_or_else(|| err("`%` not followed by two hex digits"))?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    if out.is_empty() {
        return Err(err("empty database name"));
    }
    Ok(out)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The record file name of a database's `pg_dump -Fc` archive: `<encoded>.dump`.
pub fn dump_file_name(db: &str) -> String {
    format!("{}{DUMP_SUFFIX}", encode_db_name(db.as_bytes()))
}

/// What a restore does with a file of a logical backup, decided from its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileKind {
    /// `globals.sql` (this layout) or `00000-globals.sql` (the Go plugin's later layout).
    Globals,
    /// `all.sql`: a whole-cluster `pg_dumpall` script.
    All,
    /// `manifest.json`: read, not restored.
    Manifest,
    /// A `pg_dump -Fc` archive of the named database.
    Dump {
        /// The database name (decoded for this layout, literal for the Go layout).
        db: String,
        /// Whether the name came from the Go plugin's numbered layout.
        go_layout: bool,
    },
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileKind::Globals => f.write_str("globals script"),
            FileKind::All => f.write_str("cluster script"),
            FileKind::Manifest => f.write_str("manifest"),
            FileKind::Dump { db, .. } => write!(f, "archive of database {db:?}"),
        }
    }
}

/// Classifies a record file name (the last component of its path). `None`: not a file of a
/// logical backup.
pub fn classify(file_name: &str) -> Result<Option<FileKind>, NameError> {
    match file_name {
        GLOBALS_FILE | GO_GLOBALS_FILE => return Ok(Some(FileKind::Globals)),
        ALL_FILE => return Ok(Some(FileKind::All)),
        MANIFEST_FILE => return Ok(Some(FileKind::Manifest)),
        _ => {}
    }
    let Some(stem) = file_name.strip_suffix(DUMP_SUFFIX) else { return Ok(None) };
    let b = stem.as_bytes();
    if b.len() >= 7 && b[..5].iter().all(u8::is_ascii_digit) && b[5] == b'-' {
        // The Go plugin's `%05d-<datname>.dump`: the name is literal. This layout never writes
        // such a stem (its first digit would be `%3X`).
        return Ok(Some(FileKind::Dump { db: stem[6..].to_owned(), go_layout: true }));
    }
    let bytes = decode_db_name(stem)?;
    let db = String::from_utf8(bytes)
        .map_err(|_| NameError { name: stem.to_owned(), reason: "not UTF-8 once decoded" })?;
    Ok(Some(FileKind::Dump { db, go_layout: false }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples() {
        for (name, encoded) in [
            ("app", "app"),
            ("my db", "my db"),
            ("café", "café"),
            ("a/b", "a%2Fb"),
            ("..", "%2E."),
            (".hidden", "%2Ehidden"),
            ("50%", "50%25"),
            ("line\nbreak", "line%0Abreak"),
            ("dbname=postgres port=1", "dbname=postgres port=1"),
            ("00001-app", "%300001-app"),
            ("0001-app", "0001-app"),
            ("-x", "-x"),
        ] {
            assert_eq!(encode_db_name(name.as_bytes()), encoded, "{name:?}");
            assert_eq!(decode_db_name(encoded).unwrap(), name.as_bytes());
        }
        assert_eq!(encode_db_name(b"a\xffb"), "a%FFb");
        assert_eq!(decode_db_name("a%FFb").unwrap(), b"a\xffb");
    }

    #[test]
    fn every_encoding_is_one_clean_component_and_reversible() {
        // Every single byte and pair of bytes, plus a few longer shapes.
        let mut names: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for a in [b'.', b'/', b'%', b'\n', b'a', 0xc3, 0xa9, b'0'] {
            for b in 0..=255u8 {
                names.push(vec![a, b]);
            }
        }
        names.push(b"00000-globals".to_vec());
        names.push(b"../../etc".to_vec());
        for name in names {
            let enc = encode_db_name(&name);
            let file = format!("{enc}{DUMP_SUFFIX}");
            assert!(!file.contains('/') && !file.contains('\0'), "{name:?}");
            assert!(!enc.starts_with('.'), "{name:?}");
            assert!(!enc.chars().any(|c| c.is_control()), "{name:?}");
            assert!(record_sink::RecordPath::new(format!("/{file}")).is_ok(), "{name:?}");
            assert_eq!(decode_db_name(&enc).unwrap(), name);
            if let Ok(s) = String::from_utf8(name.clone()) {
                assert_eq!(
                    classify(&file).unwrap(),
                    Some(FileKind::Dump { db: s, go_layout: false }),
                    "{name:?}"
                );
            }
        }
    }

    #[test]
    fn classify_layouts() {
        assert_eq!(classify("globals.sql").unwrap(), Some(FileKind::Globals));
        assert_eq!(classify("00000-globals.sql").unwrap(), Some(FileKind::Globals));
        assert_eq!(classify("all.sql").unwrap(), Some(FileKind::All));
        assert_eq!(classify("manifest.json").unwrap(), Some(FileKind::Manifest));
        assert_eq!(
            classify("00003-my%20db.dump").unwrap(),
            Some(FileKind::Dump { db: "my%20db".into(), go_layout: true })
        );
        assert_eq!(
            classify("%300003-x.dump").unwrap(),
            Some(FileKind::Dump { db: "00003-x".into(), go_layout: false })
        );
        assert_eq!(classify("data").unwrap(), None);
        assert_eq!(classify("x.sql").unwrap(), None);
        assert!(classify("bad%2.dump").is_err());
        assert!(classify("bad%zz.dump").is_err());
        assert!(classify(".dump").is_err());
    }
}

#[cfg(test)]
mod fuzz_replay {
    #[test]
    fn fuzz_regressions_replay() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/logical_names");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/regressions/logical_names") {
            let path = entry.unwrap().path();
            crate::fuzzing::names(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "no regression inputs in {}", dir.display());
    }

    /// A deterministic stand-in for a fuzzing run (cargo-fuzz is not needed for `cargo test`):
    /// 200 000 inputs over an alphabet rich in the bytes the mapping treats specially.
    #[test]
    fn pseudo_random_names() {
        const ALPHABET: &[u8] = b"%/.-0123456789aAfFzZ\n\0\x7f \xc3\xa9\xff\xe2\x82\xac=dump";
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..200_000 {
            let len = (next() % 24) as usize;
            let input: Vec<u8> =
                (0..len).map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize]).collect();
            crate::fuzzing::names(&input);
        }
    }
}
