//! [`TreeSink`]: records written as plain files under a directory, as they are named — what a
//! logical backup (`/globals.sql`, `/<db>.dump`, `/all.sql`, `/manifest.json`) looks like on
//! disk, and what `pg_logical::Restorer` reads back.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use record_sink::{EntryKind, Flow, Record, RecordSink, SinkError, Wants};

/// Suffix of a file being written; renamed away when the record ends.
const PARTIAL: &str = ".partial";

/// What a [`TreeSink`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TreeSinkStats {
    /// Files written.
    pub files: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

/// Writes every record as a file (or directory) under a root that must be absent or empty.
/// Files are written as `<name>.partial` and renamed when complete; `finish` flushes them to
/// disk; `abort` removes everything the sink wrote (and the root, if it made it).
#[derive(Debug)]
pub struct TreeSink {
    root: PathBuf,
    made_root: bool,
    current: Option<(PathBuf, PathBuf, BufWriter<File>)>,
    written: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
    stats: TreeSinkStats,
}

fn io_err(path: &Path, error: io::Error) -> SinkError {
    SinkError::Io { path: path.display().to_string(), error }
}

impl TreeSink {
    /// Creates the root (absent or empty), mode 0700.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let root = root.into();
        let made_root = match fs::read_dir(&root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(SinkError::Refused(format!(
                        "directory {} exists but is not empty",
                        root.display()
                    )));
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&root).map_err(|e| io_err(&root, e))?;
                true
            }
            Err(e) => return Err(io_err(&root, e)),
        };
        fs::set_permissions(&root, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(&root, e))?;
        Ok(Self {
            root,
            made_root,
            current: None,
            written: Vec::new(),
            dirs: Vec::new(),
            stats: Default::default(),
        })
    }

    /// What has been written so far.
    pub fn stats(&self) -> &TreeSinkStats {
        &self.stats
    }

    fn path_of(&self, record: &Record) -> PathBuf {
        self.root.join(record.path.as_str().trim_start_matches('/'))
    }

    fn make_dir(&mut self, dir: &Path) -> Result<(), SinkError> {
        if dir.is_dir() {
            return Ok(());
        }
        if let Some(parent) = dir.parent() {
            self.make_dir(parent)?;
        }
        fs::create_dir(dir).map_err(|e| io_err(dir, e))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
        self.dirs.push(dir.to_owned());
        Ok(())
    }
}

impl RecordSink for TreeSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if self.current.is_some() {
            return Err(SinkError::Protocol(format!("{record} announced before the previous file ended")));
        }
        let path = self.path_of(record);
        match &record.kind {
            EntryKind::Directory => {
                if record.path.as_str() != "/" {
                    self.make_dir(&path)?;
                }
                Ok(Wants::Body)
            }
            EntryKind::Symlink { .. } => Err(SinkError::Refused(format!(
                "{}: this sink writes files and directories only",
                record.path
            ))),
            EntryKind::File { .. } => {
                if let Some(parent) = path.parent() {
                    self.make_dir(parent)?;
                }
                let mut partial = path.clone().into_os_string();
                partial.push(PARTIAL);
                let partial = PathBuf::from(partial);
                let file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&partial)
                    .map_err(|e| io_err(&partial, e))?;
                self.written.push(partial.clone());
                self.current = Some((partial, path, BufWriter::with_capacity(256 * 1024, file)));
                Ok(Wants::Body)
            }
        }
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        let Some((partial, _, out)) = &mut self.current else {
            return Err(SinkError::Protocol("data outside a file".into()));
        };
        out.write_all(&chunk).map_err(|e| io_err(partial, e))?;
        self.stats.bytes += chunk.len() as u64;
        Ok(Flow::Continue)
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        let Some((partial, path, out)) = self.current.take() else {
            return Err(SinkError::Protocol("end_file outside a file".into()));
        };
        let file = out.into_inner().map_err(|e| io_err(&partial, e.into_error()))?;
        file.sync_all().map_err(|e| io_err(&partial, e))?;
        fs::rename(&partial, &path).map_err(|e| io_err(&path, e))?;
        if let Some(last) = self.written.last_mut() {
            *last = path;
        }
        self.stats.files += 1;
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.current.is_some() {
            return Err(SinkError::Protocol("finish inside a file".into()));
        }
        for dir in self.dirs.iter().rev().chain(std::iter::once(&self.root)) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))?;
        }
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        tracing::debug!("tree sink aborted: {reason}");
        self.current = None;
        for path in self.written.iter().rev() {
            let _ = fs::remove_file(path);
        }
        for dir in self.dirs.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
        if self.made_root {
            let _ = fs::remove_dir(&self.root);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use record_sink::{Metadata, RecordPath};

    use super::*;

    fn rec(path: &str) -> Record {
        Record {
            path: RecordPath::new(path).unwrap(),
            kind: EntryKind::File { size: None },
            meta: Metadata::synthetic_file(),
        }
    }

    #[tokio::test]
    async fn files_as_named_and_abort_removes_them() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("out");
        let mut sink = TreeSink::create(&root).unwrap();
        sink.record(&rec("/globals.sql")).await.unwrap();
        assert_eq!(sink.data(Bytes::from_static(b"SET x;\n")).await.unwrap(), Flow::Continue);
        assert!(root.join("globals.sql.partial").exists() && !root.join("globals.sql").exists());
        sink.end_file().await.unwrap();
        sink.record(&rec("/sub/db.dump")).await.unwrap();
        sink.end_file().await.unwrap();
        sink.finish().await.unwrap();
        assert_eq!(fs::read(root.join("globals.sql")).unwrap(), b"SET x;\n");
        assert!(root.join("sub/db.dump").exists());
        assert_eq!(sink.stats().files, 2);

        let root2 = tmp.path().join("out2");
        let mut sink = TreeSink::create(&root2).unwrap();
        sink.record(&rec("/a.dump")).await.unwrap();
        sink.end_file().await.unwrap();
        sink.record(&rec("/b.dump")).await.unwrap();
        sink.abort("failed").await.unwrap();
        assert!(!root2.exists());
        assert!(TreeSink::create(&root).unwrap_err().to_string().contains("not empty"));
    }
}
