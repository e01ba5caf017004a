//! Clean, absolute record paths.

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
