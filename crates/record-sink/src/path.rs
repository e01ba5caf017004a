//! Clean, absolute record paths, and the reversible encoding of names that are not UTF-8.
//!
//! Record paths are strings (Plakar carries them as protobuf strings), but a PostgreSQL data
//! directory may hold a file or directory whose name is not valid UTF-8, which PostgreSQL and
//! `pg_basebackup` copy as it is (the manifest carries it as `Encoded-Path`). Such a name is
//! written into a record path with [`encode_name`]: every byte of an invalid UTF-8 sequence, and
//! every `%`, becomes `%XX` (upper-case hex); the rest stays as it is. A name that is valid
//! UTF-8 is kept unchanged, except in the one case where it would read as an encoded name (see
//! [`is_encoded_name`]): then its `%` are escaped too, so that decoding gives it back.
//! [`decode_name`] reverses it; [`RecordPath::join_bytes`] and [`decode_relative`] apply it to
//! whole paths.

use std::borrow::Cow;
use std::fmt;

/// An absolute, clean, `/`-separated path inside a backup, such as `/data/base/1/1259`.
///
/// Clean means: starts with `/`, no empty, `.` or `..` component, no trailing `/` (except for
/// the root itself), no NUL. Plakar requires exactly this form, and a directory sink relies on
/// it to never write outside its target.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordPath(String);

/// Why a string is not a valid [`RecordPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid record path {path:?}: {reason}")]
pub struct RecordPathError {
    /// The rejected path.
    pub path: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl RecordPath {
    /// The root, `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Validates an absolute path.
    pub fn new(path: impl Into<String>) -> Result<Self, RecordPathError> {
        let path = path.into();
        let err = |reason| Err(RecordPathError { path: path.clone(), reason });
        if !path.starts_with('/') {
            return err("not absolute");
        }
        if path == "/" {
            return Ok(Self(path));
        }
        if path.contains('\0') {
            return err("contains NUL");
        }
        for component in path[1..].split('/') {
            match component {
                "" => return err("empty component or trailing slash"),
                "." | ".." => return err("`.` or `..` component"),
                _ => {}
            }
        }
        Ok(Self(path))
    }

    /// Appends a relative, `/`-separated path (which must itself be clean).
    pub fn join(&self, relative: &str) -> Result<Self, RecordPathError> {
        if self.0 == "/" {
            Self::new(format!("/{relative}"))
        } else {
            Self::new(format!("{}/{relative}", self.0))
        }
    }

    /// The path as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The last component (`/` for the root).
    pub fn file_name(&self) -> &str {
        if self.0 == "/" { "/" } else { self.0.rsplit('/').next().unwrap_or("/") }
    }

    /// The path relative to `prefix` (an ancestor or the path itself), without a leading `/`;
    /// `None` when `prefix` is not an ancestor.
    pub fn strip_prefix(&self, prefix: &RecordPath) -> Option<&str> {
        if prefix.0 == "/" {
            return Some(&self.0[1..]);
        }
        let rest = self.0.strip_prefix(prefix.as_str())?;
        if rest.is_empty() { Some("") } else { rest.strip_prefix('/') }
    }
}

impl RecordPath {
    /// Appends a relative, `/`-separated path given as raw bytes (a tar entry's name), each
    /// component through [`encode_name`]. The flag is true when some component had to be
    /// encoded (its name is not UTF-8, or reads like an encoded one).
    pub fn join_bytes(&self, relative: &[u8]) -> Result<(Self, bool), RecordPathError> {
        let mut encoded = String::with_capacity(relative.len());
        let mut changed = false;
        for (i, component) in relative.split(|&b| b == b'/').enumerate() {
            if i > 0 {
                encoded.push('/');
            }
            let name = encode_name(component);
            changed |= matches!(name, Cow::Owned(_));
            encoded.push_str(&name);
        }
        Ok((self.join(&encoded)?, changed))
    }
}

/// Writes a name (one path component, raw bytes) into a record path: unchanged when it is
/// valid UTF-8 (and does not read as an encoded name), else with `%` and every byte of an
/// invalid UTF-8 sequence as `%XX`. Reversed by [`decode_name`].
pub fn encode_name(name: &[u8]) -> Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(name)
        && !is_encoded_name(text)
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for chunk in name.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '%' {
                out.push_str("%25");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Cow::Owned(out)
}

/// Whether a record path component is an encoded name: a well-formed percent-encoding (every
/// `%` followed by two hex digits, at least one `%`) whose decoding is not valid UTF-8 or is,
/// again, an encoded name. Every output of [`encode_name`] that differs from its input is one,
/// and no name [`encode_name`] leaves unchanged is.
pub fn is_encoded_name(component: &str) -> bool {
    let Some(decoded) = percent_decode(component) else { return false };
    match String::from_utf8(decoded) {
        Err(_) => true,
        Ok(text) => is_encoded_name(&text),
    }
}

/// The bytes of a name written by [`encode_name`].
pub fn decode_name(component: &str) -> Cow<'_, [u8]> {
    if is_encoded_name(component) {
        Cow::Owned(percent_decode(component).expect("an encoded name decodes"))
    } else {
        Cow::Borrowed(component.as_bytes())
    }
}

/// The raw bytes of a relative, `/`-separated record path (each component through
/// [`decode_name`]).
pub fn decode_relative(relative: &str) -> Cow<'_, [u8]> {
    if !relative.contains('%') {
        return Cow::Borrowed(relative.as_bytes());
    }
    let mut out = Vec::with_capacity(relative.len());
    for (i, component) in relative.split('/').enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(&decode_name(component));
    }
    Cow::Owned(out)
}

/// `%XX` sequences decoded; `None` when there is none, or a `%` is not followed by two hex
/// digits.
fn percent_decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'%') {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hi = (hex[0] as char).to_digit(16)?;
            let lo = (hex[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

impl fmt::Display for RecordPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RecordPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_clean_paths() {
        for p in ["/", "/manifest.json", "/data/base/1/1259", "/data/odd name ü"] {
            assert_eq!(RecordPath::new(p).unwrap().as_str(), p);
        }
    }

    #[test]
    fn rejects_unclean_paths() {
        for (p, why) in [
            ("data", "not absolute"),
            ("/data/", "empty component or trailing slash"),
            ("//data", "empty component or trailing slash"),
            ("/data/../etc", "`.` or `..` component"),
            ("/./data", "`.` or `..` component"),
            ("/a\0b", "contains NUL"),
        ] {
            assert_eq!(RecordPath::new(p).unwrap_err().reason, why, "{p:?}");
        }
    }

    #[test]
    fn names_that_are_not_utf8_round_trip() {
        let cases: [(&[u8], &str); 9] = [
            (b"plain", "plain"),
            ("odd name \u{fc}".as_bytes(), "odd name \u{fc}"),
            (b"100%", "100%"),
            (b"a%2Fb", "a%2Fb"),
            (b"caf\xe9", "caf%E9"),
            (b"50%\xff", "50%25%FF"),
            (b"\xc3", "%C3"),
            // Valid UTF-8 that reads like an encoded name gets its `%` escaped.
            (b"x%FF", "x%25FF"),
            (b"x%25FF", "x%2525FF"),
        ];
        for (name, encoded) in cases {
            assert_eq!(encode_name(name), encoded, "{name:?}");
            assert_eq!(&*decode_name(encoded), name, "{encoded}");
        }
        let base = RecordPath::new("/data").unwrap();
        let (p, changed) = base.join_bytes(b"base/caf\xe9/x").unwrap();
        assert!(changed);
        assert_eq!(p.as_str(), "/data/base/caf%E9/x");
        assert_eq!(&*decode_relative(p.strip_prefix(&base).unwrap()), b"base/caf\xe9/x");
        assert_eq!(
            base.join_bytes(b"global/pg_control").unwrap(),
            (base.join("global/pg_control").unwrap(), false)
        );
        assert!(base.join_bytes(b"a/../b").is_err());
    }

    proptest::proptest! {
        /// Every byte string (a name has no `/` and no NUL) comes back from its encoding, and
        /// the encoding is the identity on UTF-8 that does not read as an encoded name.
        #[test]
        fn any_name_round_trips(name in proptest::collection::vec(proptest::prop_oneof![
            proptest::strategy::Just(b'%'), proptest::strategy::Just(b'F'), proptest::strategy::Just(b'2'),
            proptest::strategy::Just(b'5'), proptest::strategy::Just(0xC3u8), proptest::strategy::Just(0xA9u8),
            1u8..=255,
        ], 0..12)) {
            let name: Vec<u8> = name.into_iter().filter(|&b| b != b'/').collect();
            let encoded = encode_name(&name);
            proptest::prop_assert_eq!(&*decode_name(&encoded), &name[..]);
            if let Ok(text) = std::str::from_utf8(&name) && !is_encoded_name(text) {
                proptest::prop_assert_eq!(&*encoded, text);
            }
            proptest::prop_assert!(!encoded.contains('/'));
        }
    }

    #[test]
    fn join_file_name_and_strip_prefix() {
        let data = RecordPath::new("/data").unwrap();
        let f = data.join("base/1/1259").unwrap();
        assert_eq!(f.as_str(), "/data/base/1/1259");
        assert_eq!(f.file_name(), "1259");
        assert_eq!(f.strip_prefix(&data), Some("base/1/1259"));
        assert_eq!(data.strip_prefix(&data), Some(""));
        assert_eq!(RecordPath::new("/database").unwrap().strip_prefix(&data), None);
        assert_eq!(RecordPath::root().join("x").unwrap().as_str(), "/x");
        assert_eq!(f.strip_prefix(&RecordPath::root()), Some("data/base/1/1259"));
        assert!(data.join("../x").is_err());
    }
}
