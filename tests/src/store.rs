//! Snapshots stored in a directory, like Plakar's filesystem store: an index of entries and
//! content-addressed blobs (SHA-256), plus the parents Plakar synthesises (`relinkNodes`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mode;
use crate::proto::connectors;

/// `FileInfo` as stored (the fields Plakar's cache compares, and the rest).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    /// `name`.
    pub name: String,
    /// `size` (the bytes actually read, for regular files).
    pub size: i64,
    /// Go mode.
    pub mode: u32,
    /// mtime seconds.
    pub mtime_secs: i64,
    /// mtime nanoseconds.
    pub mtime_nanos: i32,
    /// `dev`.
    pub dev: u64,
    /// `ino`.
    pub ino: u64,
    /// `uid`.
    pub uid: u64,
    /// `gid`.
    pub gid: u64,
    /// `nlink`.
    pub nlink: u32,
    /// `username`.
    pub username: String,
    /// `groupname`.
    pub groupname: String,
}

impl Info {
    /// From the wire (an unset mtime is the epoch, as on the host).
    pub fn from_proto(fi: &connectors::FileInfo) -> Self {
        let ts = fi.mod_time.unwrap_or_default();
        Self {
            name: fi.name.clone(),
            size: fi.size,
            mode: fi.mode,
            mtime_secs: ts.seconds,
            mtime_nanos: ts.nanos,
            dev: fi.dev,
            ino: fi.ino,
            uid: fi.uid,
            gid: fi.gid,
            nlink: fi.nlink,
            username: fi.username.clone(),
            groupname: fi.groupname.clone(),
        }
    }

    /// To the wire.
    pub fn to_proto(&self) -> connectors::FileInfo {
        connectors::FileInfo {
            name: self.name.clone(),
            size: self.size,
            mode: self.mode,
            mod_time: Some(prost_types::Timestamp { seconds: self.mtime_secs, nanos: self.mtime_nanos }),
            dev: self.dev,
            ino: self.ino,
            uid: self.uid,
            gid: self.gid,
            nlink: self.nlink,
            username: self.username.clone(),
            groupname: self.groupname.clone(),
            flags: 0,
        }
    }

    /// kloset's `FileInfo.Equal` (or `EqualIgnoreSize` when `self.size == -1`).
    pub fn cache_equal(&self, cached: &Info) -> bool {
        (self.size == -1 || self.size == cached.size)
            && self.name == cached.name
            && self.mode == cached.mode
            && self.mtime_secs == cached.mtime_secs
            && self.mtime_nanos == cached.mtime_nanos
            && self.dev == cached.dev
            && self.ino == cached.ino
            && self.uid == cached.uid
            && self.gid == cached.gid
            && self.nlink == cached.nlink
            && self.username == cached.username
            && self.groupname == cached.groupname
    }
}

/// One entry of a snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Its metadata.
    pub info: Info,
    /// Symlink target.
    pub target: String,
    /// SHA-256 of the content, for regular files.
    pub content: Option<String>,
    /// Whether the entry was synthesised by the host (a missing parent).
    pub synthetic: bool,
}

/// A snapshot: entries by absolute path, and the path errors recorded during the backup.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Snapshot {
    /// `InitResponse.root`.
    pub root: String,
    /// `InitResponse.type`.
    pub r#type: String,
    /// `InitResponse.origin`.
    pub origin: String,
    /// Entries by path.
    pub entries: BTreeMap<String, Entry>,
    /// Path errors (error records, failed Opens).
    pub errors: BTreeMap<String, String>,
}

impl Snapshot {
    /// Adds the parents Plakar synthesises: every missing ancestor and `/`, as `ModeDir|0750`,
    /// epoch, uid/gid 0.
    pub fn relink(&mut self) {
        let mut missing = Vec::new();
        for path in self.entries.keys() {
            let mut p = parent(path);
            while let Some(d) = p {
                if !self.entries.contains_key(d) {
                    missing.push(d.to_owned());
                }
                p = parent(d);
            }
        }
        missing.push("/".into());
        for d in missing {
            self.entries.entry(d.clone()).or_insert_with(|| Entry {
                info: Info {
                    name: base(&d).to_owned(),
                    mode: mode::DIR | 0o750,
                    nlink: 1,
                    ..Info::default()
                },
                synthetic: true,
                ..Entry::default()
            });
        }
    }

    /// The children of directory `dir`, sorted by name (Go's byte order).
    pub fn children(&self, dir: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .entries
            .keys()
            .filter(|p| p.as_str() != "/" && parent(p) == Some(dir))
            .map(|s| s.as_str())
            .collect();
        v.sort_by(|a, b| base(a).as_bytes().cmp(base(b).as_bytes()));
        v
    }

    /// Saves the index as `index.json` in `dir`.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(
            dir.join("index.json"),
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )
    }

    /// Loads `index.json` from `dir`.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        serde_json::from_slice(&std::fs::read(dir.join("index.json"))?).map_err(std::io::Error::other)
    }
}

/// The parent of an absolute clean path (`None` for `/`).
pub fn parent(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last component (`/` for the root).
pub fn base(path: &str) -> &str {
    if path == "/" { "/" } else { path.rsplit('/').next().unwrap_or(path) }
}

/// A content-addressed blob store in a directory (or, with `keep = false`, one that only
/// hashes: for benchmarks, where the disk would be the bottleneck; or, [`BlobStore::counting`],
/// one that only counts bytes).
#[derive(Clone, Debug)]
pub struct BlobStore {
    dir: PathBuf,
    keep: bool,
    hash: bool,
}

/// A blob being written.
pub struct BlobWriter {
    hasher: Option<Sha256>,
    file: Option<(std::fs::File, PathBuf)>,
    len: u64,
}

impl BlobStore {
    /// A store in `dir` (created).
    pub fn new(dir: &Path, keep: bool) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("blobs"))?;
        Ok(Self { dir: dir.to_owned(), keep, hash: true })
    }

    /// A store that neither writes nor hashes, only counts (a blob's "hash" is its length): the
    /// host's side of a benchmark that measures the plugin and the transport alone, as the null
    /// sink does for a native backup.
    pub fn counting(dir: &Path) -> std::io::Result<Self> {
        Ok(Self { hash: false, ..Self::new(dir, false)? })
    }

    /// Starts a blob.
    pub fn writer(&self) -> std::io::Result<BlobWriter> {
        let file = if self.keep {
            let tmp = tempfile::NamedTempFile::new_in(self.dir.join("blobs"))?;
            let (f, p) = tmp.keep().map_err(|e| e.error)?;
            Some((f, p))
        } else {
            None
        };
        Ok(BlobWriter { hasher: self.hash.then(Sha256::new), file, len: 0 })
    }

    /// Where blob `hash` is stored.
    pub fn path(&self, hash: &str) -> PathBuf {
        self.dir.join("blobs").join(hash)
    }

    /// The content of blob `hash`.
    pub fn read(&self, hash: &str) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.path(hash))
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Finishes a blob; returns its hash.
    pub fn commit(&self, w: BlobWriter) -> std::io::Result<String> {
        let hash = match w.hasher {
            Some(h) => hex::encode(h.finalize()),
            None => format!("unhashed-{}", w.len),
        };
        if let Some((f, p)) = w.file {
            drop(f);
            std::fs::rename(p, self.path(&hash))?;
        }
        Ok(hash)
    }
}

impl BlobWriter {
    /// Appends bytes.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
        self.len += data.len() as u64;
        if let Some((f, _)) = &mut self.file {
            f.write_all(data)?;
        }
        Ok(())
    }

    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Throws the blob away.
    pub fn discard(self) {
        if let Some((f, p)) = self.file {
            drop(f);
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_walk_order() {
        assert_eq!(parent("/a/b"), Some("/a"));
        assert_eq!(parent("/a"), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(base("/a/b"), "b");
        let mut s = Snapshot::default();
        for p in ["/a-c", "/a/b", "/a/a", "/manifest.json"] {
            s.entries.insert(
                p.into(),
                Entry { info: Info { name: base(p).into(), ..Info::default() }, ..Entry::default() },
            );
        }
        s.relink();
        assert!(s.entries["/a"].synthetic && s.entries["/"].synthetic);
        assert_eq!(s.entries["/a"].info.mode, mode::DIR | 0o750);
        assert_eq!(s.children("/"), vec!["/a", "/a-c", "/manifest.json"]);
        assert_eq!(s.children("/a"), vec!["/a/a", "/a/b"]);
    }
}
