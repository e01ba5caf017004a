//! A [`RecordSink`] that writes a PostgreSQL data directory a stock `postgres` starts from.
//!
//! Records under `/data/…` go into the data directory; records under `/tablespaces/<oid>/…` go
//! into that tablespace's directory, chosen by [`DirSinkOptions::tablespace`] (by default
//! `<data dir>_tablespaces/<oid>`, next to the data directory). The `pg_tblspc/<oid>` link of
//! the data directory is always written to point at that restored copy, whatever the record
//! says: a restore on the same host as the source must never make the restored cluster use the
//! source's tablespace directories. For the same reason a non-empty `tablespace_map` is refused
//! (recovery would turn it back into links to the original paths).
//!
//! Other records (`/manifest.json`, …) go into [`DirSinkOptions::extra_dir`] when one is set,
//! and are skipped otherwise.
//!
//! Safety and durability:
//! - the data directory and every tablespace directory must be absent or empty;
//! - nothing is ever written through a symbolic link the stream itself created;
//! - modes come from the records (0700 directories, 0600 files in a default cluster), mtimes too;
//! - until [`RecordSink::finish`] the data directory holds a marker file
//!   ([`INCOMPLETE_MARKER`]) and its `PG_VERSION` is kept under another name, so `postgres`
//!   refuses to start on an unfinished or aborted directory and nobody takes it for a backup;
//!   `backup_manifest` is likewise written as `backup_manifest.tmp` and renamed last, as
//!   `pg_basebackup` does;
//! - `finish` flushes everything to disk (`syncfs` on each file system written to) before the
//!   renames, then syncs the renames.
//!
//! Writing happens on a dedicated thread fed through a bounded channel, so network reads and
//! disk writes overlap while memory stays bounded by a few chunks.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use record_sink::{EntryKind, Flow, Record, RecordPath, RecordSink, SinkError, Wants};
use tokio::sync::{mpsc, oneshot};

/// Name of the file that marks an unfinished data directory.
pub const INCOMPLETE_MARKER: &str = "PGPLAKAR_BACKUP_INCOMPLETE";

/// Suffix under which `PG_VERSION` waits for [`RecordSink::finish`].
const PENDING_SUFFIX: &str = ".pgplakar-pending";

/// How many write commands may wait for the writer thread: with chunks of up to 1 MiB, this
/// bounds the sink's memory to a few MiB whatever the size of the backup.
const QUEUE_DEPTH: usize = 8;

/// Where a [`DirSink`] writes.
#[derive(Clone, Debug)]
pub struct DirSinkOptions {
    /// The data directory to create (absent or empty).
    pub data_dir: PathBuf,
    /// Explicit locations for tablespaces, by OID (`pg_basebackup -T` by OID).
    pub tablespace_mapping: BTreeMap<u32, PathBuf>,
    /// Where tablespaces without an explicit mapping go: `<root>/<oid>`. Default:
    /// `<data_dir>_tablespaces`.
    pub tablespaces_root: Option<PathBuf>,
    /// Where records outside `/data` and `/tablespaces` go (`/manifest.json`); skipped if unset.
    pub extra_dir: Option<PathBuf>,
    /// Flush everything to disk at the end (default true; `false` is `pg_basebackup --no-sync`).
    pub sync: bool,
}

impl DirSinkOptions {
    /// Options for a data directory, with every default.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            tablespace_mapping: BTreeMap::new(),
            tablespaces_root: None,
            extra_dir: None,
            sync: true,
        }
    }

    /// The directory tablespace `oid` is restored into.
    pub fn tablespace(&self, oid: u32) -> PathBuf {
        if let Some(p) = self.tablespace_mapping.get(&oid) {
            return p.clone();
        }
        let root = self.tablespaces_root.clone().unwrap_or_else(|| {
            let mut name =
                self.data_dir.file_name().map(|n| n.to_os_string()).unwrap_or_else(|| "pgdata".into());
            name.push("_tablespaces");
            self.data_dir.with_file_name(name)
        });
        root.join(oid.to_string())
    }
}

/// What a finished [`DirSink`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirSinkStats {
    /// Regular files written.
    pub files: u64,
    /// Directories created.
    pub directories: u64,
    /// Symbolic links created.
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Records skipped (outside the data directory and tablespaces, with no `extra_dir`).
    pub skipped: u64,
}

/// Writes records into a data directory. See the [crate documentation](crate).
#[derive(Debug)]
pub struct DirSink {
    options: DirSinkOptions,
    tx: Option<mpsc::Sender<Cmd>>,
    writer: Option<std::thread::JoinHandle<()>>,
    /// Symlinks the stream created, relative to their root: nothing may be written below them.
    links: HashSet<PathBuf>,
    /// Tablespace and extra directories prepared so far.
    prepared: HashSet<PathBuf>,
    in_file: Option<FileState>,
    renames: Vec<(PathBuf, PathBuf)>,
    roots: Vec<PathBuf>,
    stats: DirSinkStats,
    /// The first error of the writer thread.
    status: WriterResult,
}

#[derive(Debug)]
enum FileState {
    Writing,
    Skipping,
}

#[derive(Debug)]
enum Cmd {
    Dir { path: PathBuf, mode: u32, mtime: SystemTime },
    Symlink { path: PathBuf, target: PathBuf },
    Open { path: PathBuf, mode: u32, mtime: SystemTime },
    Write(Bytes),
    Close,
    Finish { renames: Vec<(PathBuf, PathBuf)>, marker: PathBuf, roots: Vec<PathBuf>, sync: bool },
    Abort { marker: PathBuf, reason: String, reply: oneshot::Sender<io::Result<()>> },
}

/// The first error the writer thread met, reported on the next call.
type WriterResult = std::sync::Arc<std::sync::Mutex<Option<(PathBuf, io::Error)>>>;

impl DirSink {
    /// Creates the data directory (absent or empty) with mode 0700 and its incomplete marker,
    /// and starts the writer thread.
    pub fn create(options: DirSinkOptions) -> Result<Self, SinkError> {
        prepare_empty_dir(&options.data_dir)?;
        let marker = options.data_dir.join(INCOMPLETE_MARKER);
        fs::write(&marker, b"This directory is an unfinished backup written by pg_plakar. Do not use it.\n")
            .map_err(|e| io_err(&marker, e))?;
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let status: WriterResult = Default::default();
        let status_writer = status.clone();
        let writer = std::thread::Builder::new()
            .name("dir-sink-writer".into())
            .spawn(move || writer_thread(rx, status_writer))
            .map_err(|e| io_err(&options.data_dir, e))?;
        let roots = vec![options.data_dir.clone()];
        Ok(Self {
            options,
            tx: Some(tx),
            writer: Some(writer),
            links: HashSet::new(),
            prepared: HashSet::new(),
            in_file: None,
            renames: Vec::new(),
            roots,
            stats: DirSinkStats::default(),
            status,
        })
    }

    /// What has been written so far.
    pub fn stats(&self) -> &DirSinkStats {
        &self.stats
    }

    /// The options the sink was created with.
    pub fn options(&self) -> &DirSinkOptions {
        &self.options
    }

    async fn send(&mut self, cmd: Cmd) -> Result<(), SinkError> {
        let Some(tx) = &self.tx else {
            return Err(SinkError::Protocol("the sink is already finished or aborted".into()));
        };
        if tx.send(cmd).await.is_err() {
            return Err(self.writer_error());
        }
        Ok(())
    }

    /// The error that stopped the writer thread.
    fn writer_error(&mut self) -> SinkError {
        self.tx = None;
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        match self.status.lock().ok().and_then(|mut g| g.take()) {
            Some((path, source)) => SinkError::Io { path: path.display().to_string(), error: source },
            None => SinkError::Closed("the directory writer stopped".into()),
        }
    }

    /// Where a record goes on disk, or `None` when it is skipped.
    fn place(&mut self, path: &RecordPath) -> Result<Option<Placement>, SinkError> {
        let data = RecordPath::new("/data").expect("valid");
        let tablespaces = RecordPath::new("/tablespaces").expect("valid");
        if let Some(rel) = path.strip_prefix(&data) {
            return Ok(Some(Placement { root: self.options.data_dir.clone(), rel: PathBuf::from(rel) }));
        }
        if let Some(rel) = path.strip_prefix(&tablespaces) {
            if rel.is_empty() {
                return Ok(None);
            }
            let (oid, rest) = rel.split_once('/').unwrap_or((rel, ""));
            let oid: u32 = oid.parse().map_err(|_| {
                SinkError::Refused(format!("{path}: a tablespace directory must be named by its OID"))
            })?;
            let root = self.options.tablespace(oid);
            if self.prepared.insert(root.clone()) {
                prepare_empty_dir(&root)?;
                self.roots.push(root.clone());
            }
            return Ok(Some(Placement { root, rel: PathBuf::from(rest) }));
        }
        match &self.options.extra_dir {
            Some(dir) if path.as_str() != "/" => {
                let dir = dir.clone();
                if self.prepared.insert(dir.clone()) {
                    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                }
                Ok(Some(Placement { root: dir, rel: PathBuf::from(&path.as_str()[1..]) }))
            }
            _ => Ok(None),
        }
    }

    fn check_not_below_link(&self, placement: &Placement, record: &Record) -> Result<(), SinkError> {
        let full = placement.full();
        for ancestor in full.ancestors().skip(1) {
            if self.links.contains(ancestor) {
                return Err(SinkError::Refused(format!(
                    "{}: refusing to write below the symbolic link {} created by the same backup",
                    record.path,
                    ancestor.display()
                )));
            }
        }
        Ok(())
    }
}

struct Placement {
    root: PathBuf,
    rel: PathBuf,
}

impl Placement {
    fn full(&self) -> PathBuf {
        if self.rel.as_os_str().is_empty() { self.root.clone() } else { self.root.join(&self.rel) }
    }
}

fn io_err(path: &Path, source: io::Error) -> SinkError {
    SinkError::Io { path: path.display().to_string(), error: source }
}

/// Creates `dir` (and its parents) with mode 0700, or accepts it if it exists and is empty.
fn prepare_empty_dir(dir: &Path) -> Result<(), SinkError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SinkError::Refused(format!(
                    "directory {} exists but is not empty",
                    dir.display()
                )));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        Err(e) => return Err(io_err(dir, e)),
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))
}

impl RecordSink for DirSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if self.in_file.is_some() {
            return Err(SinkError::Protocol(format!("{record} announced before the previous file ended")));
        }
        let Some(placement) = self.place(&record.path)? else {
            self.stats.skipped += 1;
            if let EntryKind::File { .. } = record.kind {
                self.in_file = Some(FileState::Skipping);
            }
            return Ok(Wants::Skip);
        };
        self.check_not_below_link(&placement, record)?;
        let in_data = placement.root == self.options.data_dir;
        let rel = placement.rel.to_string_lossy().into_owned();
        let mode = record.meta.mode & 0o7777;
        match &record.kind {
            EntryKind::Directory => {
                self.stats.directories += 1;
                self.send(Cmd::Dir { path: placement.full(), mode, mtime: record.meta.mtime }).await?;
                Ok(Wants::Body)
            }
            EntryKind::Symlink { target } => {
                let link_target = match rel.strip_prefix("pg_tblspc/") {
                    Some(oid) if in_data && !oid.contains('/') => {
                        let oid: u32 = oid.parse().map_err(|_| {
                            SinkError::Refused(format!(
                                "{}: pg_tblspc entries must be named by OID",
                                record.path
                            ))
                        })?;
                        let dir = self.options.tablespace(oid);
                        if self.prepared.insert(dir.clone()) {
                            prepare_empty_dir(&dir)?;
                            self.roots.push(dir.clone());
                        }
                        dir
                    }
                    _ => PathBuf::from(target),
                };
                self.stats.symlinks += 1;
                self.links.insert(placement.full());
                self.send(Cmd::Symlink { path: placement.full(), target: link_target }).await?;
                Ok(Wants::Body)
            }
            EntryKind::File { size } => {
                if in_data && rel == "tablespace_map" && size.is_some_and(|s| s > 0) {
                    return Err(SinkError::Refused(
                        "the backup has a non-empty tablespace_map: recovery would link the restored cluster \
                         to the source's tablespace directories; take the backup without TABLESPACE_MAP"
                            .into(),
                    ));
                }
                let mut path = placement.full();
                if in_data && (rel == "PG_VERSION" || rel == "backup_manifest") {
                    let pending = if rel == "PG_VERSION" {
                        path.with_file_name(format!("PG_VERSION{PENDING_SUFFIX}"))
                    } else {
                        path.with_file_name("backup_manifest.tmp")
                    };
                    self.renames.push((pending.clone(), path));
                    path = pending;
                }
                self.stats.files += 1;
                self.in_file = Some(FileState::Writing);
                self.send(Cmd::Open { path, mode, mtime: record.meta.mtime }).await?;
                Ok(Wants::Body)
            }
        }
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        match self.in_file {
            Some(FileState::Writing) => {
                self.stats.bytes += chunk.len() as u64;
                self.send(Cmd::Write(chunk)).await?;
                Ok(Flow::Continue)
            }
            Some(FileState::Skipping) => Err(SinkError::Protocol("data for a skipped file".into())),
            None => Err(SinkError::Protocol("data outside a file".into())),
        }
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        match self.in_file.take() {
            Some(FileState::Writing) => self.send(Cmd::Close).await,
            Some(FileState::Skipping) => Ok(()),
            None => Err(SinkError::Protocol("end_file outside a file".into())),
        }
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.in_file.is_some() {
            return Err(SinkError::Protocol("finish inside a file".into()));
        }
        if !self.renames.iter().any(|(_, to)| to.ends_with("PG_VERSION")) {
            return Err(SinkError::Refused(format!(
                "the backup has no PG_VERSION: {} is not a data directory",
                self.options.data_dir.display()
            )));
        }
        let cmd = Cmd::Finish {
            renames: std::mem::take(&mut self.renames),
            marker: self.options.data_dir.join(INCOMPLETE_MARKER),
            roots: self.roots.clone(),
            sync: self.options.sync,
        };
        self.send(cmd).await?;
        self.tx = None;
        if let Some(handle) = self.writer.take() {
            handle.join().map_err(|_| SinkError::Closed("the directory writer panicked".into()))?;
        }
        if let Some((path, source)) = self.status.lock().ok().and_then(|mut g| g.take()) {
            return Err(SinkError::Io { path: path.display().to_string(), error: source });
        }
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.in_file = None;
        let marker = self.options.data_dir.join(INCOMPLETE_MARKER);
        let (reply, answer) = oneshot::channel();
        let sent = match &self.tx {
            Some(tx) => {
                tx.send(Cmd::Abort { marker: marker.clone(), reason: reason.to_owned(), reply }).await.is_ok()
            }
            None => false,
        };
        self.tx = None;
        let result = if sent { answer.await.unwrap_or(Ok(())) } else { write_abort_marker(&marker, reason) };
        if let Some(handle) = self.writer.take() {
            let _ = handle.join();
        }
        result.map_err(|e| io_err(&marker, e))
    }
}

fn write_abort_marker(marker: &Path, reason: &str) -> io::Result<()> {
    fs::write(
        marker,
        format!(
            "This directory is an ABORTED backup written by pg_plakar. Do not use it.\nReason: {reason}\n"
        ),
    )
}

fn writer_thread(mut rx: mpsc::Receiver<Cmd>, status: WriterResult) {
    let mut writer = Writer::default();
    while let Some(cmd) = rx.blocking_recv() {
        let result = match cmd {
            Cmd::Abort { marker, reason, reply } => {
                writer.file = None;
                let _ = reply.send(write_abort_marker(&marker, &reason));
                return;
            }
            cmd => writer.apply(cmd),
        };
        if let Err((path, e)) = result {
            if let Ok(mut slot) = status.lock() {
                *slot = Some((path, e));
            }
            return;
        }
    }
}

#[derive(Default)]
struct Writer {
    file: Option<(PathBuf, File, SystemTime)>,
    dir_times: Vec<(PathBuf, SystemTime)>,
}

impl Writer {
    fn apply(&mut self, cmd: Cmd) -> Result<(), (PathBuf, io::Error)> {
        match cmd {
            Cmd::Dir { path, mode, mtime } => {
                let r = match fs::create_dir(&path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        create_parents(&path).and_then(|_| fs::create_dir(&path))
                    }
                    r => r,
                };
                r.and_then(|_| fs::set_permissions(&path, fs::Permissions::from_mode(mode)))
                    .map_err(|e| (path.clone(), e))?;
                self.dir_times.push((path, mtime));
            }
            Cmd::Symlink { path, target } => {
                let r = match std::os::unix::fs::symlink(&target, &path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        create_parents(&path).and_then(|_| std::os::unix::fs::symlink(&target, &path))
                    }
                    r => r,
                };
                r.map_err(|e| (path, e))?;
            }
            Cmd::Open { path, mode, mtime } => {
                let open = || OpenOptions::new().write(true).create_new(true).mode(mode).open(&path);
                let file = match open() {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        create_parents(&path).and_then(|_| open())
                    }
                    r => r,
                }
                .and_then(|f| f.set_permissions(fs::Permissions::from_mode(mode)).map(|_| f))
                .map_err(|e| (path.clone(), e))?;
                self.file = Some((path, file, mtime));
            }
            Cmd::Write(chunk) => {
                let Some((path, file, _)) = &mut self.file else {
                    return Err((PathBuf::new(), io::Error::other("write with no open file")));
                };
                file.write_all(&chunk).map_err(|e| (path.clone(), e))?;
            }
            Cmd::Close => {
                if let Some((path, file, mtime)) = self.file.take() {
                    file.set_modified(mtime).map_err(|e| (path, e))?;
                }
            }
            Cmd::Finish { renames, marker, roots, sync } => {
                // Directory mtimes last: creating their entries changed them. Deepest first.
                for (path, mtime) in self.dir_times.iter().rev() {
                    File::open(path).and_then(|d| d.set_modified(*mtime)).map_err(|e| (path.clone(), e))?;
                }
                if sync {
                    for root in &roots {
                        sync_filesystem(root).map_err(|e| (root.clone(), e))?;
                    }
                }
                for (from, to) in renames {
                    fs::rename(&from, &to).map_err(|e| (to.clone(), e))?;
                }
                fs::remove_file(&marker).map_err(|e| (marker.clone(), e))?;
                if sync {
                    let data_dir = marker.parent().unwrap_or(Path::new("."));
                    File::open(data_dir).and_then(|d| d.sync_all()).map_err(|e| (data_dir.to_owned(), e))?;
                }
            }
            Cmd::Abort { .. } => unreachable!("handled by the thread loop"),
        }
        Ok(())
    }
}

fn create_parents(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(parent) => {
            fs::create_dir_all(parent)?;
            fs::set_permissions(parent, fs::Permissions::from_mode(0o700))
        }
        None => Ok(()),
    }
}

/// Flushes the whole file system holding `dir`: one `syncfs(2)` instead of one `fsync` per file.
fn sync_filesystem(dir: &Path) -> io::Result<()> {
    let d = File::open(dir)?;
    nix::unistd::syncfs(&d).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::time::{Duration, UNIX_EPOCH};

    use record_sink::Metadata;

    use super::*;

    fn meta(mode: u32) -> Metadata {
        Metadata::new(mode, UNIX_EPOCH + Duration::from_secs(1_700_000_000))
    }

    fn rec(path: &str, kind: EntryKind, mode: u32) -> Record {
        Record { path: RecordPath::new(path).unwrap(), kind, meta: meta(mode) }
    }

    async fn file(sink: &mut DirSink, path: &str, body: &[u8]) -> Result<(), SinkError> {
        let wants = sink.record(&rec(path, EntryKind::File { size: Some(body.len() as u64) }, 0o600)).await?;
        if wants == Wants::Body {
            assert_eq!(sink.data(Bytes::copy_from_slice(body)).await?, Flow::Continue);
        }
        sink.end_file().await
    }

    async fn dir(sink: &mut DirSink, path: &str) -> Result<Wants, SinkError> {
        sink.record(&rec(path, EntryKind::Directory, 0o700)).await
    }

    #[tokio::test]
    async fn writes_a_data_directory_with_tablespaces() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("pgdata");
        let mut opts = DirSinkOptions::new(&data);
        opts.extra_dir = Some(tmp.path().join("extra"));
        let mut sink = DirSink::create(opts).unwrap();
        file(&mut sink, "/manifest.json", b"{}").await.unwrap();
        dir(&mut sink, "/data").await.unwrap();
        dir(&mut sink, "/data/pg_notify").await.unwrap();
        dir(&mut sink, "/data/pg_tblspc").await.unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        file(&mut sink, "/data/global/pg_control", &[7; 8192]).await.unwrap();
        let link = EntryKind::Symlink { target: "../../tablespaces/16384".into() };
        sink.record(&rec("/data/pg_tblspc/16384", link, 0o777)).await.unwrap();
        dir(&mut sink, "/tablespaces/16384/PG_16_202307071").await.unwrap();
        file(&mut sink, "/tablespaces/16384/PG_16_202307071/5/16385", b"rel").await.unwrap();
        file(&mut sink, "/data/backup_manifest", b"manifest").await.unwrap();

        // Before finish: no PG_VERSION, a marker, no backup_manifest.
        tokio::task::yield_now().await;
        assert!(!data.join("PG_VERSION").exists());
        assert!(!data.join("backup_manifest").exists());
        assert!(data.join(INCOMPLETE_MARKER).exists());

        sink.finish().await.unwrap();
        assert_eq!(fs::read(data.join("PG_VERSION")).unwrap(), b"16\n");
        assert_eq!(fs::read(data.join("backup_manifest")).unwrap(), b"manifest");
        assert!(!data.join(INCOMPLETE_MARKER).exists());
        assert!(!data.join("backup_manifest.tmp").exists());
        assert_eq!(fs::read(tmp.path().join("extra/manifest.json")).unwrap(), b"{}");

        let ts = tmp.path().join("pgdata_tablespaces/16384");
        assert_eq!(
            fs::read_link(data.join("pg_tblspc/16384")).unwrap(),
            ts,
            "link goes to the restored copy"
        );
        assert_eq!(fs::read(ts.join("PG_16_202307071/5/16385")).unwrap(), b"rel");

        let m = fs::metadata(data.join("global/pg_control")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.len(), m.mtime()), (0o600, 8192, 1_700_000_000));
        let m = fs::metadata(data.join("pg_notify")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.mtime()), (0o700, 1_700_000_000));
        assert_eq!(fs::metadata(&data).unwrap().mode() & 0o777, 0o700);
        assert_eq!(sink.stats().files, 5);
        assert_eq!(sink.stats().bytes, 3 + 8192 + 3 + 8 + 2);
    }

    #[tokio::test]
    async fn refuses_a_non_empty_target() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join("x"), b"").unwrap();
        let err = DirSink::create(DirSinkOptions::new(tmp.path())).unwrap_err();
        assert!(err.to_string().ends_with("exists but is not empty"), "{err}");

        // And a non-empty tablespace target.
        let data = tmp.path().join("d");
        let mut opts = DirSinkOptions::new(&data);
        opts.tablespace_mapping.insert(1, tmp.path().to_owned());
        let mut sink = DirSink::create(opts).unwrap();
        let err = dir(&mut sink, "/tablespaces/1/PG_16").await.unwrap_err();
        assert!(err.to_string().contains("exists but is not empty"), "{err}");
    }

    #[tokio::test]
    async fn never_writes_through_a_link_of_the_stream() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        fs::create_dir(&outside).unwrap();
        let mut sink = DirSink::create(DirSinkOptions::new(tmp.path().join("d"))).unwrap();
        let link = EntryKind::Symlink { target: outside.display().to_string() };
        sink.record(&rec("/data/evil", link, 0o777)).await.unwrap();
        let err = file(&mut sink, "/data/evil/passwd", b"x").await.unwrap_err();
        assert!(err.to_string().contains("refusing to write below the symbolic link"), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn refuses_a_tablespace_map_and_a_backup_without_pg_version() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = DirSink::create(DirSinkOptions::new(tmp.path().join("d"))).unwrap();
        file(&mut sink, "/data/tablespace_map", b"").await.unwrap();
        let err = file(&mut sink, "/data/tablespace_map", b"16384 /srv/ts\n").await.unwrap_err();
        assert!(err.to_string().contains("non-empty tablespace_map"), "{err}");
        let err = sink.finish().await.unwrap_err();
        assert!(err.to_string().contains("has no PG_VERSION"), "{err}");
    }

    #[tokio::test]
    async fn abort_leaves_a_marker_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d");
        let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        sink.abort("server error XX001").await.unwrap();
        let marker = fs::read_to_string(data.join(INCOMPLETE_MARKER)).unwrap();
        assert!(marker.contains("ABORTED") && marker.contains("XX001"), "{marker}");
        assert!(
            !data.join("PG_VERSION").exists(),
            "an aborted directory must not look like a data directory"
        );
    }

    #[tokio::test]
    async fn an_io_error_is_reported_with_its_path() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("d");
        let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
        file(&mut sink, "/data/a", b"1").await.unwrap();
        // The same file twice: create_new fails in the writer thread; the error surfaces on a
        // later call, naming the file.
        let mut err = None;
        for _ in 0..QUEUE_DEPTH + 4 {
            if let Err(e) = file(&mut sink, "/data/a", b"2").await {
                err = Some(e);
                break;
            }
        }
        let err = match err {
            Some(e) => e,
            None => sink.finish().await.unwrap_err(),
        };
        assert!(err.to_string().contains("/d/a"), "{err}");
    }

    #[tokio::test]
    async fn skips_records_outside_its_scope() {
        let tmp = tempfile::tempdir().unwrap();
        let mut sink = DirSink::create(DirSinkOptions::new(tmp.path().join("d"))).unwrap();
        let wants =
            sink.record(&rec("/manifest.json", EntryKind::File { size: Some(2) }, 0o600)).await.unwrap();
        assert_eq!(wants, Wants::Skip);
        sink.end_file().await.unwrap();
        assert_eq!(sink.stats().skipped, 1);
    }
}
