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
//! Paths are made absolute when the sink is created, so the `pg_tblspc/<oid>` links are
//! absolute and resolve from wherever the server runs. A tablespace mapping for an OID the
//! backup does not have is an error at [`RecordSink::finish`].
//!
//! Safety and durability:
//! - the data directory and every tablespace directory must be absent or empty;
//! - on [`RecordSink::abort`] (or when the sink is dropped unfinished) the sink removes what it
//!   created — each directory it made, or the contents of one that was empty — as
//!   `pg_basebackup` does, so a retry starts clean; with [`DirSinkOptions::keep_on_failure`]
//!   (`pg_basebackup --no-clean`) it keeps them and leaves the reason in the marker;
//! - nothing is ever written through a symbolic link the stream itself created;
//! - modes come from the records (0700 directories, 0600 files in a default cluster), mtimes too;
//! - until [`RecordSink::finish`] the data directory holds a marker file
//!   ([`INCOMPLETE_MARKER`]) and its `PG_VERSION` is kept under another name, so `postgres`
//!   refuses to start on an unfinished or kept aborted directory and nobody takes it for a
//!   backup;
//!   `backup_manifest` is likewise written as `backup_manifest.tmp` and renamed last, as
//!   `pg_basebackup` does;
//! - `finish` flushes everything to disk (`syncfs` on each file system written to) before the
//!   renames, then syncs the renames.
//!
//! Files are written where the records arrive, on the caller's task, as `pg_basebackup` does:
//! each chunk goes to the kernel while it is still in this core's cache, with no thread
//! hand-off. A profile of the earlier design (a writer thread fed through a channel) showed its
//! cost: the chunks crossed cores cold, so the kernel's copy into the page cache took several
//! times longer than `pg_basebackup`'s, and every chunk woke a thread and the runtime (see
//! docs/benchmarks.md, "The directory writer"). The sink buffers nothing: memory stays flat.
//!
//! With `sync` (the default), writeback of each file starts while the backup is still
//! streaming — every [`WRITEBACK_STEP`] bytes and when the file is closed —, and `finish` then
//! `fsync`s every file and directory written, as `pg_basebackup` does; the final flush finds
//! little left to write, and other programs' dirty data on the same file system is not waited
//! for (as `syncfs` would).

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bytes::Bytes;
use record_sink::{EntryKind, Flow, Record, RecordPath, RecordSink, SinkError, Wants};

mod tree;
pub use tree::{TreeSink, TreeSinkStats};

/// Name of the file that marks an unfinished data directory.
pub use record_sink::INCOMPLETE_MARKER;

/// Suffix under which `PG_VERSION` waits for [`RecordSink::finish`].
const PENDING_SUFFIX: &str = ".pgplakar-pending";

/// Writeback of a file being written starts every this many bytes.
pub const WRITEBACK_STEP: u64 = 16 << 20;
/// When a file is closed, writeback of its unflushed tail starts if it is at least this long.
const WRITEBACK_TAIL: u64 = 1 << 20;

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
    /// Keep what was written when the backup fails, with the reason in the marker (default
    /// false: remove it; `true` is `pg_basebackup --no-clean`).
    pub keep_on_failure: bool,
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
            keep_on_failure: false,
        }
    }

    /// The same options with every path absolute (relative ones are taken from the current
    /// directory), so links written from them resolve from anywhere. An empty path is refused.
    pub fn absolute(&self) -> Result<Self, SinkError> {
        let abs = |p: &Path, what: &str| -> Result<PathBuf, SinkError> {
            if p.as_os_str().is_empty() {
                return Err(SinkError::Refused(format!("the {what} directory is empty")));
            }
            std::path::absolute(p).map_err(|e| io_err(p, e))
        };
        let mut out = self.clone();
        out.data_dir = abs(&self.data_dir, "data")?;
        for (oid, dir) in &mut out.tablespace_mapping {
            *dir = abs(dir, &format!("tablespace {oid}"))?;
        }
        if let Some(root) = &self.tablespaces_root {
            out.tablespaces_root = Some(abs(root, "tablespaces")?);
        }
        if let Some(extra) = &self.extra_dir {
            out.extra_dir = Some(abs(extra, "extra")?);
        }
        Ok(out)
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
    /// Applies the commands; `None` once finished, aborted or failed.
    writer: Option<Writer>,
    /// Symlinks the stream created, relative to their root: nothing may be written below them.
    links: HashSet<PathBuf>,
    /// Tablespace and extra directories prepared so far.
    prepared: HashSet<PathBuf>,
    in_file: Option<FileState>,
    renames: Vec<(PathBuf, PathBuf)>,
    roots: Vec<PathBuf>,
    stats: DirSinkStats,
    /// What the sink made, to remove on failure.
    made: Vec<Made>,
    /// Tablespace OIDs the records used (to refuse a mapping the backup has no use for).
    used_oids: HashSet<u32>,
    /// `finish` or `abort` ran.
    ended: bool,
}

/// A directory the sink is responsible for.
#[derive(Debug, Clone)]
enum Made {
    /// Created by the sink: removed on failure.
    Created(PathBuf),
    /// Found empty: emptied again on failure.
    FoundEmpty(PathBuf),
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
}

impl DirSink {
    /// Creates the data directory (absent or empty) with mode 0700 and its incomplete marker.
    pub fn create(options: DirSinkOptions) -> Result<Self, SinkError> {
        let options = options.absolute()?;
        let made = vec![prepare_empty_dir(&options.data_dir)?];
        let marker = options.data_dir.join(INCOMPLETE_MARKER);
        if let Err(e) = fs::write(
            &marker,
            b"This directory is an unfinished backup written by pg_plakar. Do not use it.\n",
        ) {
            clean(&made);
            return Err(io_err(&marker, e));
        }
        let writer = Writer { sync: options.sync, ..Writer::default() };
        let roots = vec![options.data_dir.clone()];
        Ok(Self {
            options,
            writer: Some(writer),
            links: HashSet::new(),
            prepared: HashSet::new(),
            in_file: None,
            renames: Vec::new(),
            roots,
            stats: DirSinkStats::default(),
            made,
            used_oids: HashSet::new(),
            ended: false,
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

    /// Applies a command; after a failure the sink refuses everything but `abort`.
    fn apply(&mut self, cmd: Cmd) -> Result<(), SinkError> {
        let Some(writer) = &mut self.writer else {
            return Err(SinkError::Protocol("the sink is already finished, aborted or failed".into()));
        };
        writer.apply(cmd).map_err(|(path, e)| {
            self.writer = None;
            io_err(&path, e)
        })
    }

    /// Where a record goes on disk, or `None` when it is skipped.
    fn place(&mut self, path: &RecordPath) -> Result<Option<Placement>, SinkError> {
        let data = RecordPath::new("/data").expect("valid");
        let tablespaces = RecordPath::new("/tablespaces").expect("valid");
        if let Some(rel) = path.strip_prefix(&data) {
            return Ok(Some(Placement { root: self.options.data_dir.clone(), rel: raw_path(rel) }));
        }
        if let Some(rel) = path.strip_prefix(&tablespaces) {
            if rel.is_empty() {
                return Ok(None);
            }
            let (oid, rest) = rel.split_once('/').unwrap_or((rel, ""));
            let oid: u32 = oid.parse().map_err(|_| {
                SinkError::Refused(format!("{path}: a tablespace directory must be named by its OID"))
            })?;
            let root = self.tablespace_dir(oid)?;
            return Ok(Some(Placement { root, rel: raw_path(rest) }));
        }
        match &self.options.extra_dir {
            Some(dir) if path.as_str() != "/" => {
                let dir = dir.clone();
                if self.prepared.insert(dir.clone()) {
                    if !dir.exists() {
                        self.made.push(Made::Created(dir.clone()));
                    }
                    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                }
                Ok(Some(Placement { root: dir, rel: raw_path(&path.as_str()[1..]) }))
            }
            _ => Ok(None),
        }
    }

    /// The directory of tablespace `oid`, prepared (absent or empty) on first use.
    fn tablespace_dir(&mut self, oid: u32) -> Result<PathBuf, SinkError> {
        self.used_oids.insert(oid);
        let dir = self.options.tablespace(oid);
        if self.prepared.insert(dir.clone()) {
            self.made.push(prepare_empty_dir(&dir)?);
            self.roots.push(dir.clone());
        }
        Ok(dir)
    }

    /// Stops the writer thread and removes what the sink made, or (keeping it) writes the
    /// reason into the marker.
    fn fail(&mut self, reason: &str) -> io::Result<()> {
        self.ended = true;
        self.in_file = None;
        // Closes the open file, if any.
        self.writer = None;
        let marker = self.options.data_dir.join(INCOMPLETE_MARKER);
        if self.options.keep_on_failure {
            tracing::info!(
                "data directory {} not removed at user's request",
                self.options.data_dir.display()
            );
            return write_abort_marker(&marker, reason);
        }
        clean(&self.made);
        Ok(())
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

/// The file system path of a relative record path: names that are not UTF-8 are written with
/// their exact bytes (record_sink::decode_relative).
fn raw_path(rel: &str) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    PathBuf::from(std::ffi::OsStr::from_bytes(&record_sink::decode_relative(rel)))
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
fn prepare_empty_dir(dir: &Path) -> Result<Made, SinkError> {
    let made = match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SinkError::Refused(format!(
                    "directory {} exists but is not empty",
                    dir.display()
                )));
            }
            Made::FoundEmpty(dir.to_owned())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
            Made::Created(dir.to_owned())
        }
        Err(e) => return Err(io_err(dir, e)),
    };
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(dir, e))?;
    Ok(made)
}

/// Removes what the sink made, newest first, as `pg_basebackup` does after a failure: a
/// directory it created goes, one it found empty is emptied. Errors are logged, not returned:
/// the backup has already failed for a better reason.
fn clean(made: &[Made]) {
    for m in made.iter().rev() {
        let result = match m {
            Made::Created(dir) => {
                tracing::info!("removing directory {}", dir.display());
                fs::remove_dir_all(dir)
            }
            Made::FoundEmpty(dir) => {
                tracing::info!("removing contents of directory {}", dir.display());
                remove_contents(dir)
            }
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                let dir = match m {
                    Made::Created(d) | Made::FoundEmpty(d) => d,
                };
                tracing::warn!("could not remove {}: {e}", dir.display());
            }
        }
    }
}

fn remove_contents(dir: &Path) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            fs::remove_dir_all(entry.path())?;
        } else {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
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
                self.apply(Cmd::Dir { path: placement.full(), mode, mtime: record.meta.mtime })?;
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
                        self.tablespace_dir(oid)?
                    }
                    _ => PathBuf::from(target),
                };
                self.stats.symlinks += 1;
                self.links.insert(placement.full());
                self.apply(Cmd::Symlink { path: placement.full(), target: link_target })?;
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
                self.apply(Cmd::Open { path, mode, mtime: record.meta.mtime })?;
                Ok(Wants::Body)
            }
        }
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        match self.in_file {
            Some(FileState::Writing) => {
                self.stats.bytes += chunk.len() as u64;
                self.apply(Cmd::Write(chunk))?;
                Ok(Flow::Continue)
            }
            Some(FileState::Skipping) => Err(SinkError::Protocol("data for a skipped file".into())),
            None => Err(SinkError::Protocol("data outside a file".into())),
        }
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        match self.in_file.take() {
            Some(FileState::Writing) => self.apply(Cmd::Close),
            Some(FileState::Skipping) => Ok(()),
            None => Err(SinkError::Protocol("end_file outside a file".into())),
        }
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.in_file.is_some() {
            return Err(SinkError::Protocol("finish inside a file".into()));
        }
        if let Some(oid) = self.options.tablespace_mapping.keys().find(|oid| !self.used_oids.contains(oid)) {
            return Err(SinkError::Refused(format!(
                "a tablespace mapping names OID {oid}, but the backup has no tablespace with that OID \
                 outside the data directory"
            )));
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
        self.apply(cmd)?;
        self.writer = None;
        self.ended = true;
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.in_file = None;
        let marker = self.options.data_dir.join(INCOMPLETE_MARKER);
        // Closes the open file, if any, before anything is removed or rewritten.
        self.writer = None;
        self.fail(reason).map_err(|e| io_err(&marker, e))
    }
}

impl Drop for DirSink {
    /// A sink dropped before `finish` or `abort` (a cancelled backup, a caller's early return)
    /// is a failed backup: what it made is removed (or kept with a marker saying so).
    fn drop(&mut self) {
        if !self.ended {
            let _ = self.fail("the backup was interrupted before it finished");
        }
    }
}

fn write_abort_marker(marker: &Path, reason: &str) -> io::Result<()> {
    fs::write(marker, record_sink::abort_marker_text(reason))
}

/// The file being written.
#[derive(Debug)]
struct OpenFile {
    path: PathBuf,
    file: File,
    mtime: SystemTime,
    /// Bytes written so far.
    written: u64,
    /// Writeback has been started up to here.
    hinted: u64,
}

impl OpenFile {
    /// Starts writing back `[hinted, written)` without waiting for it: on Linux
    /// `POSIX_FADV_DONTNEED` kicks off writeback of the dirty pages of the range (what
    /// PostgreSQL's `pg_flush_data` falls back to), and drops only pages already clean.
    fn start_writeback(&mut self) {
        let len = self.written - self.hinted;
        if len == 0 {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(self.hinted), i64::try_from(len)) else { return };
        // Only a hint: an error here costs nothing but the early start.
        let _ = nix::fcntl::posix_fadvise(
            &self.file,
            offset,
            len,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        );
        self.hinted = self.written;
    }
}

#[derive(Debug, Default)]
struct Writer {
    file: Option<OpenFile>,
    dir_times: Vec<(PathBuf, SystemTime)>,
    /// Whether the backup is flushed at the end (and writeback started early).
    sync: bool,
    /// Files written, flushed one by one at the end.
    written_files: Vec<PathBuf>,
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
                self.file = Some(OpenFile { path, file, mtime, written: 0, hinted: 0 });
            }
            Cmd::Write(chunk) => self.write(&chunk)?,
            Cmd::Close => {
                if let Some(mut f) = self.file.take() {
                    f.file.set_modified(f.mtime).map_err(|e| (f.path.clone(), e))?;
                    if self.sync {
                        // The tail of a big file; a small file is left to the final fsync.
                        if f.written - f.hinted >= WRITEBACK_TAIL {
                            f.start_writeback();
                        }
                        self.written_files.push(f.path);
                    }
                }
            }
            Cmd::Finish { renames, marker, roots, sync } => {
                // Directory mtimes last: creating their entries changed them. Deepest first.
                for (path, mtime) in self.dir_times.iter().rev() {
                    File::open(path).and_then(|d| d.set_modified(*mtime)).map_err(|e| (path.clone(), e))?;
                }
                if sync {
                    // Every file, then every directory (their entries), deepest first.
                    for path in &self.written_files {
                        File::open(path).and_then(|f| f.sync_all()).map_err(|e| (path.clone(), e))?;
                    }
                    let dirs = self.dir_times.iter().rev().map(|(p, _)| p).chain(roots.iter());
                    for path in dirs {
                        File::open(path).and_then(|d| d.sync_all()).map_err(|e| (path.clone(), e))?;
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
        }
        Ok(())
    }

    /// Writes a chunk of the open file, and starts writeback every [`WRITEBACK_STEP`] bytes.
    fn write(&mut self, chunk: &[u8]) -> Result<(), (PathBuf, io::Error)> {
        let Some(f) = &mut self.file else {
            return Err((PathBuf::new(), io::Error::other("write with no open file")));
        };
        f.file.write_all(chunk).map_err(|e| (f.path.clone(), e))?;
        f.written += chunk.len() as u64;
        if self.sync && f.written - f.hinted >= WRITEBACK_STEP {
            f.start_writeback();
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
        let opts = DirSinkOptions { keep_on_failure: true, ..DirSinkOptions::new(&data) };
        let mut sink = DirSink::create(opts).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        sink.abort("server error XX001").await.unwrap();
        let marker = fs::read_to_string(data.join(INCOMPLETE_MARKER)).unwrap();
        assert!(marker.contains("ABORTED") && marker.contains("XX001"), "{marker}");
        assert!(
            !data.join("PG_VERSION").exists(),
            "an aborted directory must not look like a data directory"
        );
    }

    /// A backup with a tablespace and extra records, into `data` with `opts`, then aborted.
    async fn abort_a_backup(opts: DirSinkOptions) {
        let mut sink = DirSink::create(opts).unwrap();
        file(&mut sink, "/manifest.json", b"{}").await.unwrap();
        dir(&mut sink, "/data").await.unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        let link = EntryKind::Symlink { target: "../../tablespaces/16384".into() };
        sink.record(&rec("/data/pg_tblspc/16384", link, 0o777)).await.unwrap();
        file(&mut sink, "/tablespaces/16384/PG_16/5/1", b"rel").await.unwrap();
        // In the middle of a file.
        sink.record(&rec("/data/base/1/1", EntryKind::File { size: Some(8) }, 0o600)).await.unwrap();
        let _ = sink.data(Bytes::from_static(b"half")).await.unwrap();
        sink.abort("server error XX001").await.unwrap();
    }

    #[tokio::test]
    async fn abort_removes_what_the_sink_made() {
        let tmp = tempfile::tempdir().unwrap();
        // A data directory and an extra directory the sink creates; a tablespace directory
        // that exists, empty.
        let data = tmp.path().join("new/pgdata");
        let ts = tmp.path().join("ts");
        fs::create_dir(&ts).unwrap();
        let mut opts = DirSinkOptions::new(&data);
        opts.tablespace_mapping.insert(16384, ts.clone());
        opts.extra_dir = Some(tmp.path().join("extra"));
        abort_a_backup(opts).await;
        assert!(!data.exists(), "the data directory it created is gone");
        assert!(!tmp.path().join("extra").exists(), "the extra directory it created is gone");
        assert!(ts.is_dir(), "the tablespace directory it found stays");
        assert_eq!(fs::read_dir(&ts).unwrap().count(), 0, "emptied");

        // The same into an existing empty data directory: emptied, kept.
        let data = tmp.path().join("empty");
        fs::create_dir(&data).unwrap();
        abort_a_backup(DirSinkOptions::new(&data)).await;
        assert_eq!(fs::read_dir(&data).unwrap().count(), 0);
        // The default tablespace root's directory was created by the sink: gone.
        assert!(!tmp.path().join("empty_tablespaces/16384").exists());

        // A retry into the same places works.
        let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        sink.finish().await.unwrap();
        assert!(data.join("PG_VERSION").is_file());
    }

    #[tokio::test]
    async fn keep_on_failure_keeps_everything_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("pgdata");
        abort_a_backup(DirSinkOptions { keep_on_failure: true, ..DirSinkOptions::new(&data) }).await;
        let marker = fs::read_to_string(data.join(INCOMPLETE_MARKER)).unwrap();
        assert!(marker.contains("ABORTED") && marker.contains("XX001"), "{marker}");
        assert_eq!(fs::read(tmp.path().join("pgdata_tablespaces/16384/PG_16/5/1")).unwrap(), b"rel");
    }

    #[tokio::test]
    async fn a_sink_dropped_unfinished_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("pgdata");
        let mut sink = DirSink::create(DirSinkOptions::new(&data)).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        drop(sink);
        assert!(!data.exists());

        let opts = DirSinkOptions { keep_on_failure: true, ..DirSinkOptions::new(&data) };
        let mut sink = DirSink::create(opts).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        drop(sink);
        let marker = fs::read_to_string(data.join(INCOMPLETE_MARKER)).unwrap();
        assert!(marker.contains("interrupted before it finished"), "{marker}");
    }

    #[tokio::test]
    async fn relative_paths_give_absolute_links() {
        let tmp = tempfile::tempdir().unwrap();
        // Relative to the current directory, as a user types them.
        let cwd = std::env::current_dir().unwrap();
        let rel_data = pathdiff(&tmp.path().join("pgdata"), &cwd);
        let rel_ts = pathdiff(&tmp.path().join("ts"), &cwd);
        assert!(rel_data.is_relative());
        let mut opts = DirSinkOptions::new(&rel_data);
        opts.tablespace_mapping.insert(16384, rel_ts);
        let mut sink = DirSink::create(opts).unwrap();
        assert!(sink.options().data_dir.is_absolute());
        let link = EntryKind::Symlink { target: "../../tablespaces/16384".into() };
        sink.record(&rec("/data/pg_tblspc/16384", link, 0o777)).await.unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        sink.finish().await.unwrap();
        let target = fs::read_link(tmp.path().join("pgdata/pg_tblspc/16384")).unwrap();
        assert!(target.is_absolute(), "{target:?}");
        assert_eq!(fs::canonicalize(&target).unwrap(), fs::canonicalize(tmp.path().join("ts")).unwrap());
        assert!(tmp.path().join("pgdata/pg_tblspc/16384").is_dir(), "the link resolves");
    }

    /// `path` relative to `base` (both absolute), with `..` as needed.
    fn pathdiff(path: &Path, base: &Path) -> PathBuf {
        let (p, b): (Vec<_>, Vec<_>) = (path.components().collect(), base.components().collect());
        let common = p.iter().zip(&b).take_while(|(x, y)| x == y).count();
        let mut out = PathBuf::new();
        for _ in common..b.len() {
            out.push("..");
        }
        for c in &p[common..] {
            out.push(c);
        }
        out
    }

    #[tokio::test]
    async fn bad_tablespace_mappings_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        // An empty directory: refused at once, nothing created.
        let mut opts = DirSinkOptions::new(tmp.path().join("pgdata"));
        opts.tablespace_mapping.insert(16384, PathBuf::new());
        let err = DirSink::create(opts).unwrap_err().to_string();
        assert!(err.contains("the tablespace 16384 directory is empty"), "{err}");
        assert!(!tmp.path().join("pgdata").exists());

        // An OID the backup does not have: refused at the end, which then cleans up.
        let mut opts = DirSinkOptions::new(tmp.path().join("pgdata"));
        opts.tablespace_mapping.insert(99999, tmp.path().join("ts"));
        let mut sink = DirSink::create(opts).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"16\n").await.unwrap();
        let err = sink.finish().await.unwrap_err().to_string();
        assert!(err.contains("names OID 99999, but the backup has no tablespace with that OID"), "{err}");
        sink.abort(&err).await.unwrap();
        assert!(!tmp.path().join("pgdata").exists());
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
        for _ in 0..4 {
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
