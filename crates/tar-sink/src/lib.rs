//! A [`RecordSink`] that writes a physical backup as tar archives, like `pg_basebackup -Ft`.
//!
//! Into a directory ([`TarTarget::Directory`]):
//!
//! | records | written as |
//! |---|---|
//! | `/data/…` | members of `base.tar` (paths relative to the data directory) |
//! | `/data/backup_manifest` | the file `backup_manifest` next to the archives (as `pg_basebackup`), renamed into place last |
//! | `/tablespaces/<oid>/…` | members of `<oid>.tar` (paths relative to the tablespace directory) |
//! | anything else (`/manifest.json`) | a file in [`TarSinkOptions::extra_dir`], or skipped |
//!
//! Into a stream ([`TarTarget::Stream`], `-D -` for stdout): one tar of the data directory with
//! `backup_manifest` inside it, as `pg_basebackup -D - -Ft` does; a backup with tablespaces
//! outside the data directory is refused, since one stream cannot hold two archives.
//!
//! The `pg_tblspc/<oid>` links keep the target the record gives (the physical source's
//! `../../tablespaces/<oid>`: extract `<oid>.tar` into `tablespaces/<oid>` next to the data
//! directory), unless [`TarSinkOptions::tablespace_mapping`] names a directory for that OID
//! (`pg_basebackup -T`).
//!
//! Members are POSIX ustar, with a pax extended header for a path or link target that ustar
//! cannot hold; an archive ends with two zero blocks. Nothing is buffered beyond one write
//! buffer: a file's size comes from its record, so every header is written before its body. The
//! one exception is a stream's file of unknown size (the `backup_manifest` the physical source
//! passes through as it arrives): it is spooled to a private temporary file, then written.
//!
//! Failure: until [`RecordSink::finish`] there is no `backup_manifest` and no archive has its
//! end-of-archive blocks, so an interrupted backup cannot pass for a good one; on
//! [`RecordSink::abort`] the files the sink created are removed (and the directory, if it made
//! it), unless [`TarSinkOptions::keep_on_failure`] (`pg_basebackup --no-clean`): then they stay,
//! flushed but without their end-of-archive blocks, next to an [`INCOMPLETE_MARKER`] file that
//! gives the reason. A stream is left without its end-of-archive blocks, which `tar` reports.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use record_sink::{EntryKind, Flow, Record, RecordPath, RecordSink, SinkError, Wants};

/// Size of a tar block.
const BLOCK: usize = 512;
/// Write buffer of each archive.
const BUFFER: usize = 256 * 1024;

/// Where a [`TarSink`] writes.
pub enum TarTarget {
    /// A directory (absent or empty) for `base.tar`, `<oid>.tar` and `backup_manifest`.
    Directory(PathBuf),
    /// One tar stream of the data directory, `backup_manifest` included (stdout).
    Stream(Box<dyn Write + Send>),
}

impl std::fmt::Debug for TarTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TarTarget::Directory(d) => f.debug_tuple("Directory").field(d).finish(),
            TarTarget::Stream(_) => f.write_str("Stream"),
        }
    }
}

/// Options of a [`TarSink`].
#[derive(Debug)]
pub struct TarSinkOptions {
    /// Where to write.
    pub target: TarTarget,
    /// Link targets for `pg_tblspc/<oid>` by OID (`pg_basebackup -T`).
    pub tablespace_mapping: BTreeMap<u32, PathBuf>,
    /// Where records outside `/data` and `/tablespaces` go (`/manifest.json`); skipped if unset.
    pub extra_dir: Option<PathBuf>,
    /// Flush the files to disk at the end (directory target; default true).
    pub sync: bool,
    /// On abort, keep what was written (directory target) and leave the reason in
    /// [`INCOMPLETE_MARKER`] instead of removing it (`pg_basebackup --no-clean`; default false).
    pub keep_on_failure: bool,
}

/// The file a kept, aborted backup directory holds, with the reason (shared with `dir-sink`).
pub use record_sink::INCOMPLETE_MARKER;

impl TarSinkOptions {
    /// Options for a target, with every default.
    pub fn new(target: TarTarget) -> Self {
        Self {
            target,
            tablespace_mapping: BTreeMap::new(),
            extra_dir: None,
            sync: true,
            keep_on_failure: false,
        }
    }
}

/// What a [`TarSink`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TarSinkStats {
    /// Archives written (`base.tar`, `<oid>.tar`, or the stream).
    pub archives: u64,
    /// Members that are regular files.
    pub files: u64,
    /// Directory members.
    pub directories: u64,
    /// Symbolic link members.
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Bytes written, headers and padding included.
    pub written: u64,
    /// Records skipped (outside the data directory and tablespaces, with no `extra_dir`).
    pub skipped: u64,
}

/// Writes records as tar archives. See the [crate documentation](crate).
pub struct TarSink {
    options: TarSinkOptionsRest,
    /// The stream, or the directory.
    stream: Option<Archive>,
    dir: Option<PathBuf>,
    /// Open archives of a directory target, by file name.
    archives: BTreeMap<String, Archive>,
    current: Option<Current>,
    /// Files to remove on abort; directory to remove when the sink made it.
    created: Vec<PathBuf>,
    made_dir: bool,
    /// (pending, final) renames done by `finish`.
    renames: Vec<(PathBuf, PathBuf)>,
    seen_pg_version: bool,
    extra_prepared: HashSet<PathBuf>,
    stats: TarSinkStats,
    ended: bool,
}

impl std::fmt::Debug for TarSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TarSink").field("dir", &self.dir).field("stats", &self.stats).finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct TarSinkOptionsRest {
    tablespace_mapping: BTreeMap<u32, PathBuf>,
    extra_dir: Option<PathBuf>,
    sync: bool,
    keep_on_failure: bool,
}

struct Archive {
    /// The file, for a directory target (fsync at the end).
    path: Option<PathBuf>,
    out: BufWriter<Box<dyn Write + Send>>,
    file: Option<File>,
    written: u64,
}

impl Archive {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }
}

/// Where the body of the current file goes.
enum Current {
    /// A tar member: `remaining` bytes still expected.
    Member { archive: Option<String>, remaining: u64, size: u64, path: String },
    /// A plain file (backup_manifest, extra records).
    Plain { file: BufWriter<File>, path: PathBuf },
    /// A file of unknown size in a stream (the `backup_manifest` a source passes through as it
    /// arrives): spooled to a temporary file, written as a member once its size is known.
    Spooled { record: Record, rel: String, spool: BufWriter<File>, path: PathBuf, size: u64 },
    /// A skipped file.
    Skipping,
}

fn io_err(path: &Path, source: io::Error) -> SinkError {
    SinkError::Io { path: path.display().to_string(), error: source }
}

impl TarSink {
    /// Creates the sink: a directory target must be absent or empty (it is created with mode
    /// 0700).
    pub fn create(options: TarSinkOptions) -> Result<Self, SinkError> {
        let rest = TarSinkOptionsRest {
            tablespace_mapping: options.tablespace_mapping,
            extra_dir: options.extra_dir,
            sync: options.sync,
            keep_on_failure: options.keep_on_failure,
        };
        let mut sink = Self {
            options: rest,
            stream: None,
            dir: None,
            archives: BTreeMap::new(),
            current: None,
            created: Vec::new(),
            made_dir: false,
            renames: Vec::new(),
            seen_pg_version: false,
            extra_prepared: HashSet::new(),
            stats: TarSinkStats::default(),
            ended: false,
        };
        match options.target {
            TarTarget::Stream(w) => {
                sink.stats.archives = 1;
                sink.stream = Some(Archive {
                    path: None,
                    out: BufWriter::with_capacity(BUFFER, w),
                    file: None,
                    written: 0,
                })
            }
            TarTarget::Directory(dir) => {
                match fs::read_dir(&dir) {
                    Ok(mut entries) => {
                        if entries.next().is_some() {
                            return Err(SinkError::Refused(format!(
                                "directory {} exists but is not empty",
                                dir.display()
                            )));
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                        sink.made_dir = true;
                    }
                    Err(e) => return Err(io_err(&dir, e)),
                }
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|e| io_err(&dir, e))?;
                sink.dir = Some(dir);
            }
        }
        Ok(sink)
    }

    /// What has been written so far.
    pub fn stats(&self) -> &TarSinkStats {
        &self.stats
    }

    /// The archive for `name` (`base.tar`, `<oid>.tar`), opened on first use.
    fn archive(&mut self, name: Option<&str>) -> Result<&mut Archive, SinkError> {
        let Some(name) = name else {
            return self.stream.as_mut().ok_or_else(|| SinkError::Protocol("no stream".into()));
        };
        if !self.archives.contains_key(name) {
            let dir = self.dir.as_ref().expect("a directory target");
            let path = dir.join(name);
            let file = new_file(&path)?;
            self.created.push(path.clone());
            let clone = file.try_clone().map_err(|e| io_err(&path, e))?;
            self.stats.archives += 1;
            self.archives.insert(
                name.to_owned(),
                Archive {
                    path: Some(path),
                    out: BufWriter::with_capacity(BUFFER, Box::new(file)),
                    file: Some(clone),
                    written: 0,
                },
            );
        }
        Ok(self.archives.get_mut(name).expect("inserted"))
    }

    fn write_to(&mut self, archive: Option<&str>, bytes: &[u8]) -> Result<(), SinkError> {
        let a = self.archive(archive)?;
        let r = a.write(bytes);
        let path = a.path.clone().unwrap_or_else(|| PathBuf::from("-"));
        r.map_err(|e| stream_err(&path, e))?;
        self.stats.written += bytes.len() as u64;
        Ok(())
    }

    /// Where a record goes: its archive (`None` = the stream) and member path, a plain file, or
    /// nowhere.
    fn place(&mut self, record: &Record) -> Result<Place, SinkError> {
        let path = &record.path;
        let data = RecordPath::new("/data").expect("valid");
        let tablespaces = RecordPath::new("/tablespaces").expect("valid");
        let streaming = self.stream.is_some();
        if let Some(rel) = path.strip_prefix(&data) {
            if rel.is_empty() {
                return Ok(Place::Nowhere);
            }
            if rel == "backup_manifest" && !streaming {
                let dir = self.dir.clone().expect("a directory target");
                return Ok(Place::Plain(dir.join("backup_manifest.tmp"), Some(dir.join("backup_manifest"))));
            }
            let archive = if streaming { None } else { Some("base.tar".to_owned()) };
            return Ok(Place::Member(archive, rel.to_owned()));
        }
        if let Some(rel) = path.strip_prefix(&tablespaces) {
            if rel.is_empty() {
                return Ok(Place::Nowhere);
            }
            let (oid, rest) = rel.split_once('/').unwrap_or((rel, ""));
            let oid: u32 = oid.parse().map_err(|_| {
                SinkError::Refused(format!("{path}: a tablespace directory must be named by its OID"))
            })?;
            if streaming {
                return Err(SinkError::Refused(format!(
                    "the cluster has a tablespace (OID {oid}) outside the data directory: a single tar \
                     stream holds only the data directory; write the backup into a directory instead"
                )));
            }
            if rest.is_empty() {
                return Ok(Place::Nowhere);
            }
            return Ok(Place::Member(Some(format!("{oid}.tar")), rest.to_owned()));
        }
        match &self.options.extra_dir {
            Some(dir) if path.as_str() != "/" => {
                let dir = dir.clone();
                if self.extra_prepared.insert(dir.clone()) {
                    fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
                }
                let rel = &path.as_str()[1..];
                Ok(Place::Plain(dir.join(rel), None))
            }
            _ => Ok(Place::Nowhere),
        }
    }

    /// Writes a spooled file as a member of the stream.
    fn write_spooled(
        &mut self,
        record: &mut Record,
        rel: &str,
        spool: BufWriter<File>,
        path: &Path,
        size: u64,
    ) -> Result<(), SinkError> {
        let mut file = spool.into_inner().map_err(|e| io_err(path, e.into_error()))?;
        record.kind = EntryKind::File { size: Some(size) };
        let header = member_header(record, rel, None, size)?;
        self.write_to(None, &header)?;
        file.seek(io::SeekFrom::Start(0)).map_err(|e| io_err(path, e))?;
        let mut buf = vec![0u8; BUFFER];
        let mut left = size;
        while left > 0 {
            let n = file.read(&mut buf).map_err(|e| io_err(path, e))?;
            if n == 0 {
                return Err(io_err(path, io::ErrorKind::UnexpectedEof.into()));
            }
            self.write_to(None, &buf[..n])?;
            left = left.saturating_sub(n as u64);
        }
        self.stats.files += 1;
        self.stats.bytes += size;
        let pad = padding(size);
        if pad > 0 {
            self.write_to(None, &[0u8; BLOCK][..pad])?;
        }
        Ok(())
    }

    fn remove_created(&mut self) {
        self.archives.clear();
        if let Some(Current::Spooled { path, .. }) = self.current.take() {
            let _ = fs::remove_file(path);
        }
        for path in self.created.iter().rev() {
            if let Err(e) = fs::remove_file(path)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!("could not remove {}: {e}", path.display());
            }
        }
        if self.made_dir
            && let Some(dir) = &self.dir
            && let Err(e) = fs::remove_dir(dir)
        {
            tracing::warn!("could not remove {}: {e}", dir.display());
        }
    }
}

enum Place {
    Member(Option<String>, String),
    Plain(PathBuf, Option<PathBuf>),
    Nowhere,
}

/// A new private temporary file (memory stays bounded whatever the size of what it holds).
fn spool_file() -> Result<(PathBuf, File), SinkError> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    for _ in 0..100 {
        let name = format!("tar-sink-{}-{}.spool", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let path = dir.join(name);
        match OpenOptions::new().read(true).write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&path, e)),
        }
    }
    Err(SinkError::Refused(format!("cannot create a spool file in {}", dir.display())))
}

fn new_file(path: &Path) -> Result<File, SinkError> {
    OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| io_err(path, e))
}

fn stream_err(path: &Path, e: io::Error) -> SinkError {
    if e.kind() == io::ErrorKind::BrokenPipe {
        SinkError::Closed(format!("{}: the reader of the tar stream went away", path.display()))
    } else {
        io_err(path, e)
    }
}

/// The header block(s) of a member: a pax extended header first when ustar cannot hold the
/// path or the link target.
fn member_header(record: &Record, path: &str, link: Option<&str>, size: u64) -> Result<Vec<u8>, SinkError> {
    let mut header = tar::Header::new_ustar();
    let mtime = record.meta.mtime.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    header.set_mode(record.meta.mode & 0o7777);
    header.set_uid(u64::from(record.meta.uid.unwrap_or(0)));
    header.set_gid(u64::from(record.meta.gid.unwrap_or(0)));
    header.set_mtime(mtime);
    header.set_size(size);
    let (kind, name) = match (&record.kind, link) {
        (EntryKind::Directory, _) => (tar::EntryType::Directory, format!("{}/", path.trim_end_matches('/'))),
        (EntryKind::Symlink { .. }, _) => (tar::EntryType::Symlink, path.to_owned()),
        (EntryKind::File { .. }, _) => (tar::EntryType::Regular, path.to_owned()),
    };
    header.set_entry_type(kind);
    let mut pax = Vec::new();
    if header.set_path(&name).is_err() || name.len() > 255 {
        pax_record(&mut pax, "path", &name);
        header.set_path(truncated_name(&name)).map_err(|e| SinkError::Refused(format!("{path}: {e}")))?;
    }
    if let Some(target) = link
        && header.set_link_name(target).is_err()
    {
        pax_record(&mut pax, "linkpath", target);
        header.set_link_name("pax-linkpath").map_err(|e| SinkError::Refused(format!("{path}: {e}")))?;
    }
    header.set_cksum();
    let mut out = Vec::with_capacity(3 * BLOCK);
    if !pax.is_empty() {
        let mut x = tar::Header::new_ustar();
        x.set_path("././@PaxHeader").map_err(|e| SinkError::Refused(format!("{path}: {e}")))?;
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_mode(0o644);
        x.set_mtime(mtime);
        x.set_size(pax.len() as u64);
        x.set_cksum();
        out.extend_from_slice(x.as_bytes());
        out.extend_from_slice(&pax);
        out.resize(out.len() + padding(pax.len() as u64), 0);
    }
    out.extend_from_slice(header.as_bytes());
    Ok(out)
}

/// A short name for the ustar field when the real one is in a pax header.
fn truncated_name(name: &str) -> String {
    let mut end = name.len().min(99);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// Appends one pax record: `"<len> <key>=<value>\n"`, where `<len>` counts the whole line.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &str) {
    let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}={value}\n").as_bytes());
}

fn padding(size: u64) -> usize {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 { 0 } else { BLOCK - rem }
}

impl RecordSink for TarSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if self.ended {
            return Err(SinkError::Protocol("the sink is already finished or aborted".into()));
        }
        if self.current.is_some() {
            return Err(SinkError::Protocol(format!("{record} announced before the previous file ended")));
        }
        let place = self.place(record)?;
        match place {
            Place::Nowhere => {
                self.stats.skipped += 1;
                if let EntryKind::File { .. } = record.kind {
                    self.current = Some(Current::Skipping);
                }
                Ok(Wants::Skip)
            }
            Place::Plain(path, rename) => {
                let EntryKind::File { .. } = record.kind else {
                    return Ok(Wants::Skip);
                };
                let file = new_file(&path)?;
                self.created.push(path.clone());
                if let Some(to) = rename {
                    self.created.push(to.clone());
                    self.renames.push((path.clone(), to));
                }
                self.stats.files += 1;
                self.current = Some(Current::Plain { file: BufWriter::with_capacity(BUFFER, file), path });
                Ok(Wants::Body)
            }
            Place::Member(archive, rel) => {
                let in_data = archive.as_deref().is_none_or(|a| a == "base.tar");
                let (size, link) = match &record.kind {
                    EntryKind::File { size: Some(size) } => (*size, None),
                    EntryKind::File { size: None } if archive.is_none() => {
                        let (path, file) = spool_file()?;
                        self.current = Some(Current::Spooled {
                            record: record.clone(),
                            rel,
                            spool: BufWriter::with_capacity(BUFFER, file),
                            path,
                            size: 0,
                        });
                        return Ok(Wants::Body);
                    }
                    EntryKind::File { size: None } => {
                        return Err(SinkError::Refused(format!(
                            "{}: tar output needs the size of each file in advance",
                            record.path
                        )));
                    }
                    EntryKind::Directory => (0, None),
                    EntryKind::Symlink { target } => {
                        let target = rel
                            .strip_prefix("pg_tblspc/")
                            .filter(|oid| in_data && !oid.contains('/'))
                            .and_then(|oid| oid.parse::<u32>().ok())
                            .and_then(|oid| self.options.tablespace_mapping.get(&oid))
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|| target.clone());
                        (0, Some(target))
                    }
                };
                if in_data && rel == "PG_VERSION" {
                    self.seen_pg_version = true;
                }
                let header = member_header(record, &rel, link.as_deref(), size)?;
                self.write_to(archive.as_deref(), &header)?;
                match record.kind {
                    EntryKind::File { .. } => {
                        self.stats.files += 1;
                        self.current = Some(Current::Member { archive, remaining: size, size, path: rel });
                    }
                    EntryKind::Directory => self.stats.directories += 1,
                    EntryKind::Symlink { .. } => self.stats.symlinks += 1,
                }
                Ok(Wants::Body)
            }
        }
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        match self.current.take() {
            Some(Current::Member { archive, remaining, size, path }) => {
                let len = chunk.len() as u64;
                if len > remaining {
                    return Err(SinkError::Protocol(format!(
                        "{path}: more than the {size} bytes its record announced"
                    )));
                }
                self.write_to(archive.as_deref(), &chunk)?;
                self.stats.bytes += len;
                self.current = Some(Current::Member { archive, remaining: remaining - len, size, path });
                Ok(Flow::Continue)
            }
            Some(Current::Plain { mut file, path }) => {
                file.write_all(&chunk).map_err(|e| io_err(&path, e))?;
                self.stats.bytes += chunk.len() as u64;
                self.current = Some(Current::Plain { file, path });
                Ok(Flow::Continue)
            }
            Some(Current::Spooled { record, rel, mut spool, path, size }) => {
                spool.write_all(&chunk).map_err(|e| io_err(&path, e))?;
                let size = size + chunk.len() as u64;
                self.current = Some(Current::Spooled { record, rel, spool, path, size });
                Ok(Flow::Continue)
            }
            Some(Current::Skipping) => Err(SinkError::Protocol("data for a skipped file".into())),
            None => Err(SinkError::Protocol("data outside a file".into())),
        }
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        match self.current.take() {
            Some(Current::Member { archive, remaining, size, path }) => {
                if remaining != 0 {
                    return Err(SinkError::Protocol(format!(
                        "{path}: {} bytes instead of the {size} its record announced",
                        size - remaining
                    )));
                }
                let pad = padding(size);
                if pad > 0 {
                    self.write_to(archive.as_deref(), &[0u8; BLOCK][..pad])?;
                }
                Ok(())
            }
            Some(Current::Plain { file, path }) => {
                let file = file.into_inner().map_err(|e| io_err(&path, e.into_error()))?;
                if self.options.sync {
                    file.sync_all().map_err(|e| io_err(&path, e))?;
                }
                Ok(())
            }
            Some(Current::Spooled { mut record, rel, spool, path, size }) => {
                let result = self.write_spooled(&mut record, &rel, spool, &path, size);
                let _ = fs::remove_file(&path);
                result
            }
            Some(Current::Skipping) => Ok(()),
            None => Err(SinkError::Protocol("end_file outside a file".into())),
        }
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.ended {
            return Err(SinkError::Protocol("the sink is already finished or aborted".into()));
        }
        if self.current.is_some() {
            return Err(SinkError::Protocol("finish inside a file".into()));
        }
        if !self.seen_pg_version {
            return Err(SinkError::Refused(
                "the backup has no PG_VERSION: it is not a PostgreSQL data directory".into(),
            ));
        }
        let sync = self.options.sync;
        let mut all: Vec<&mut Archive> = self.archives.values_mut().collect();
        if let Some(s) = self.stream.as_mut() {
            all.push(s);
        }
        for a in all {
            let path = a.path.clone().unwrap_or_else(|| PathBuf::from("-"));
            a.write(&[0u8; 2 * BLOCK]).and_then(|_| a.out.flush()).map_err(|e| stream_err(&path, e))?;
            self.stats.written += 2 * BLOCK as u64;
            if sync && let Some(f) = &a.file {
                f.sync_all().map_err(|e| io_err(&path, e))?;
            }
        }
        for (from, to) in std::mem::take(&mut self.renames) {
            fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
        }
        if sync && let Some(dir) = &self.dir {
            File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err(dir, e))?;
        }
        self.ended = true;
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        tracing::debug!("tar sink aborted: {reason}");
        self.ended = true;
        if let Some(s) = self.stream.as_mut() {
            // What was written stays written (a reader sees a tar without its end); flush so
            // the reader sees where it stopped.
            let _ = s.out.flush();
        }
        if self.options.keep_on_failure
            && let Some(dir) = self.dir.clone()
        {
            if let Some(Current::Spooled { path, .. }) = self.current.take() {
                let _ = fs::remove_file(path);
            }
            for archive in self.archives.values_mut() {
                let _ = archive.out.flush();
            }
            tracing::info!("backup directory {} not removed at user's request", dir.display());
            let marker = dir.join(INCOMPLETE_MARKER);
            return fs::write(&marker, record_sink::abort_marker_text(reason))
                .map_err(|error| SinkError::Io { path: marker.display().to_string(), error });
        }
        self.remove_created();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, UNIX_EPOCH};

    use record_sink::Metadata;

    use super::*;

    fn rec(path: &str, kind: EntryKind, mode: u32) -> Record {
        Record {
            path: RecordPath::new(path).unwrap(),
            kind,
            meta: Metadata::new(mode, UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        }
    }

    async fn file(sink: &mut TarSink, path: &str, body: &[u8]) -> Result<(), SinkError> {
        let wants = sink.record(&rec(path, EntryKind::File { size: Some(body.len() as u64) }, 0o600)).await?;
        if wants == Wants::Body {
            for piece in body.chunks(700) {
                assert_eq!(sink.data(Bytes::copy_from_slice(piece)).await?, Flow::Continue);
            }
        }
        sink.end_file().await
    }

    async fn backup(sink: &mut TarSink, long: &str) {
        file(sink, "/manifest.json", b"{}").await.unwrap();
        sink.record(&rec("/tablespaces/16384", EntryKind::Directory, 0o700)).await.unwrap();
        sink.record(&rec("/tablespaces/16384/PG_17_1", EntryKind::Directory, 0o700)).await.unwrap();
        file(sink, "/tablespaces/16384/PG_17_1/5/16385", &[9; 1000]).await.unwrap();
        sink.record(&rec("/data", EntryKind::Directory, 0o700)).await.unwrap();
        file(sink, "/data/PG_VERSION", b"17\n").await.unwrap();
        sink.record(&rec("/data/global", EntryKind::Directory, 0o700)).await.unwrap();
        file(sink, "/data/global/pg_control", &[7; 8192]).await.unwrap();
        file(sink, &format!("/data/{long}"), b"long").await.unwrap();
        let link = EntryKind::Symlink { target: "../../tablespaces/16384".into() };
        sink.record(&rec("/data/pg_tblspc/16384", link, 0o777)).await.unwrap();
        file(sink, "/data/backup_manifest", b"manifest").await.unwrap();
    }

    fn members(bytes: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>, Option<String>)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().display().to_string();
                let kind = e.header().entry_type();
                let link = e.link_name().unwrap().map(|l| l.display().to_string());
                let mut body = Vec::new();
                e.read_to_end(&mut body).unwrap();
                (path, kind, body, link)
            })
            .collect()
    }

    #[tokio::test]
    async fn a_directory_of_archives_like_pg_basebackup() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut opts = TarSinkOptions::new(TarTarget::Directory(out.clone()));
        opts.extra_dir = Some(tmp.path().join("meta"));
        opts.tablespace_mapping.insert(16384, PathBuf::from("/srv/ts"));
        let mut sink = TarSink::create(opts).unwrap();
        let long = format!("{}/file", "d".repeat(300));
        backup(&mut sink, &long).await;
        assert!(!out.join("backup_manifest").exists(), "the manifest is renamed into place last");
        sink.finish().await.unwrap();

        let mut names: Vec<_> = fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert_eq!(names, ["16384.tar", "backup_manifest", "base.tar"]);
        assert_eq!(fs::read(out.join("backup_manifest")).unwrap(), b"manifest");
        assert_eq!(fs::read(tmp.path().join("meta/manifest.json")).unwrap(), b"{}");

        let base = members(&fs::read(out.join("base.tar")).unwrap());
        let names: Vec<&str> = base.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["PG_VERSION", "global/", "global/pg_control", long.as_str(), "pg_tblspc/16384"]);
        assert_eq!(base[2].2, vec![7; 8192]);
        assert_eq!(base[3].2, b"long");
        assert_eq!(base[4].1, tar::EntryType::Symlink);
        assert_eq!(base[4].3.as_deref(), Some("/srv/ts"), "-T rewrites the link");
        let ts = members(&fs::read(out.join("16384.tar")).unwrap());
        assert_eq!(ts[1].0, "PG_17_1/5/16385");
        assert_eq!(ts[1].2, vec![9; 1000]);
        let s = sink.stats();
        assert_eq!((s.archives, s.files), (2, 6));
    }

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_stream_holds_the_manifest_and_refuses_tablespaces() {
        let out = Shared::default();
        let mut sink =
            TarSink::create(TarSinkOptions::new(TarTarget::Stream(Box::new(out.clone())))).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"17\n").await.unwrap();
        let manifest = rec("/data/backup_manifest", EntryKind::File { size: None }, 0o600);
        assert_eq!(sink.record(&manifest).await.unwrap(), Wants::Body);
        for piece in [&b"mani"[..], b"fest"] {
            assert_eq!(sink.data(Bytes::copy_from_slice(piece)).await.unwrap(), Flow::Continue);
        }
        sink.end_file().await.unwrap();
        sink.finish().await.unwrap();
        let bytes = out.0.lock().unwrap().clone();
        let m = members(&bytes);
        assert_eq!(m.iter().map(|m| m.0.as_str()).collect::<Vec<_>>(), ["PG_VERSION", "backup_manifest"]);
        assert_eq!(m[1].2, b"manifest");
        assert_eq!(bytes.len() % BLOCK, 0);
        assert!(bytes.ends_with(&[0; 1024]));

        let mut sink =
            TarSink::create(TarSinkOptions::new(TarTarget::Stream(Box::new(Shared::default())))).unwrap();
        let err = sink.record(&rec("/tablespaces/1/PG_17", EntryKind::Directory, 0o700)).await.unwrap_err();
        assert!(err.to_string().contains("write the backup into a directory"), "{err}");
    }

    #[tokio::test]
    async fn no_clean_keeps_what_it_wrote_with_the_reason() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut o = TarSinkOptions::new(TarTarget::Directory(out.clone()));
        o.keep_on_failure = true;
        let mut sink = TarSink::create(o).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"17\n").await.unwrap();
        sink.abort("the server went away").await.unwrap();
        let marker = std::fs::read_to_string(out.join(INCOMPLETE_MARKER)).unwrap();
        assert!(marker.contains("ABORTED") && marker.contains("Reason: the server went away"), "{marker}");
        // The archive is kept, flushed, without its end-of-archive blocks.
        let base = std::fs::read(out.join("base.tar")).unwrap();
        assert_eq!(base.len(), 1024, "one header and one block of data, no end blocks");
        assert!(!out.join("backup_manifest").exists());
    }

    #[tokio::test]
    async fn abort_removes_what_it_wrote_and_sizes_are_enforced() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let mut sink = TarSink::create(TarSinkOptions::new(TarTarget::Directory(out.clone()))).unwrap();
        file(&mut sink, "/data/PG_VERSION", b"17\n").await.unwrap();
        sink.record(&rec("/data/x", EntryKind::File { size: Some(4) }, 0o600)).await.unwrap();
        let err = sink.data(Bytes::from_static(b"12345")).await.unwrap_err();
        assert!(err.to_string().contains("more than the 4 bytes"), "{err}");
        sink.abort("test").await.unwrap();
        assert!(!out.exists(), "the directory it made is gone");

        let mut sink = TarSink::create(TarSinkOptions::new(TarTarget::Directory(out.clone()))).unwrap();
        sink.record(&rec("/data/x", EntryKind::File { size: Some(4) }, 0o600)).await.unwrap();
        assert_eq!(sink.data(Bytes::from_static(b"12")).await.unwrap(), Flow::Continue);
        let err = sink.end_file().await.unwrap_err();
        assert!(err.to_string().contains("2 bytes instead of the 4"), "{err}");
        let err = sink.record(&rec("/data/y", EntryKind::File { size: None }, 0o600)).await.unwrap_err();
        assert!(err.to_string().contains("needs the size"), "{err}");
        let err = sink.finish().await.unwrap_err();
        assert!(err.to_string().contains("no PG_VERSION"), "{err}");
    }

    #[test]
    fn pax_lengths_count_themselves() {
        for n in [1, 90, 95, 96, 97, 990, 995, 1000] {
            let mut out = Vec::new();
            pax_record(&mut out, "path", &"x".repeat(n));
            let text = String::from_utf8(out.clone()).unwrap();
            let len: usize = text.split(' ').next().unwrap().parse().unwrap();
            assert_eq!(len, out.len(), "{text}");
        }
    }
}
