//! From decoder events to records: where the base backup's archives become `/data/…` and
//! `/tablespaces/<oid>/…` records, and where every file is checked against `backup_manifest`.
//!
//! The pipeline is driven one [`Event`] at a time by whoever reads the connection; it holds
//! nothing larger than one chunk plus, per file, its manifest path, size and checksum, so its
//! memory grows with the number of files, never with their size.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pg_basebackup::{Entry, Event, Lsn, TablespaceInfo};
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, Wants};

use crate::verify::{FileCheck, ManifestCheck};
use crate::{EntryProblem, PhysicalError};

/// Where the backup's main data directory goes.
pub const DATA_ROOT: &str = "/data";
/// Where extra tablespaces go, one directory per OID.
pub const TABLESPACES_ROOT: &str = "/tablespaces";

/// What the pipeline learnt about the backup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// Start position and timeline.
    pub start: Option<(Lsn, u32)>,
    /// End position and timeline.
    pub end: Option<(Lsn, u32)>,
    /// The tablespaces, main data directory last.
    pub tablespaces: Vec<TablespaceInfo>,
    /// Regular files received.
    pub files: u64,
    /// Bytes of file content received.
    pub bytes: u64,
    /// Files checked against the manifest.
    pub verified_files: u64,
    /// Warnings the server sent (checksum failures, archiving not enabled, …).
    pub warnings: Vec<String>,
}

#[derive(Debug)]
struct Current {
    record: String,
    manifest_path: Option<String>,
    wants: Wants,
    check: Option<FileCheck>,
    size: u64,
    expected: u64,
}

/// Turns decoder events into records in a sink.
#[derive(Debug)]
pub struct Pipeline {
    data_mode: u32,
    manifest: ManifestCheck,
    current: Option<Current>,
    in_manifest: bool,
    tablespaces_announced: bool,
    /// The archive being received, for error messages.
    archive: Option<String>,
    /// Whether the end result set arrived.
    ended: bool,
    summary: BackupSummary,
    /// Entries seen so far (the per-backup `ino` of unstable files).
    entries: u64,
    /// Files whose tar mtime (Unix seconds) is at or after this are marked unstable.
    unstable_since: u64,
}

/// How long before the start of a backup a file's mtime still counts as "maybe changing": covers
/// the one-second resolution of tar mtimes and a server clock behind the client's.
pub const UNSTABLE_MARGIN: Duration = Duration::from_secs(300);

fn mtime(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

impl Pipeline {
    /// A pipeline writing the data directory root with `data_mode` (from
    /// `SHOW data_directory_mode`), checking files with `manifest`.
    pub fn new(data_mode: u32, manifest: ManifestCheck) -> Self {
        Self {
            data_mode,
            manifest,
            current: None,
            in_manifest: false,
            tablespaces_announced: false,
            archive: None,
            ended: false,
            summary: BackupSummary::default(),
            entries: 0,
            unstable_since: SystemTime::now()
                .checked_sub(UNSTABLE_MARGIN)
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// What has been seen so far.
    pub fn summary(&self) -> &BackupSummary {
        &self.summary
    }

    /// Where the backup is, for error messages: `in archive "base.tar", file /data/base/5/1249`,
    /// `in backup_manifest`, `after the end of the backup`, ….
    pub fn position(&self) -> String {
        if self.ended {
            return "after the end of the backup (before the server's final completion)".into();
        }
        if self.in_manifest {
            return "in backup_manifest".into();
        }
        match (&self.archive, &self.current) {
            (Some(a), Some(c)) => format!("in archive {a:?}, file {}", c.record),
            (Some(a), None) => format!("in archive {a:?}"),
            (None, _) if self.summary.start.is_some() => "before the first archive".into(),
            (None, _) => "before the backup started".into(),
        }
    }

    /// Handles one event. [`Event::Done`] is not handled here: the caller decides when the
    /// backup is complete (stream mode still has WAL to hand over).
    pub async fn handle<S: RecordSink>(&mut self, event: Event, sink: &mut S) -> Result<(), PhysicalError> {
        match event {
            Event::BackupStart { start_lsn, timeline, tablespaces } => {
                self.summary.start = Some((start_lsn, timeline));
                self.summary.tablespaces = tablespaces;
            }
            Event::ArchiveStart(archive) => {
                self.archive = Some(archive.name.clone());
                let (path, mode) = match archive.tablespace.oid {
                    None => (DATA_ROOT.to_owned(), self.data_mode),
                    Some(oid) => {
                        if !self.tablespaces_announced {
                            self.tablespaces_announced = true;
                            sink.record(&dir_record(TABLESPACES_ROOT, 0o700)).await?;
                        }
                        (format!("{TABLESPACES_ROOT}/{oid}"), 0o700)
                    }
                };
                sink.record(&dir_record(&path, mode)).await?;
            }
            Event::EntryStart(entry) => self.entry_start(*entry, sink).await?,
            Event::EntryData(bytes) => self.entry_data(bytes, sink).await?,
            Event::EntryEnd => self.entry_end(sink).await?,
            Event::ArchiveEnd { .. } | Event::Progress { .. } | Event::ParameterStatus { .. } => {}
            Event::ManifestStart => {
                self.in_manifest = true;
                let record = Record {
                    path: RecordPath::new(format!("{DATA_ROOT}/backup_manifest")).expect("valid path"),
                    kind: EntryKind::File { size: None },
                    meta: Metadata::new(0o600, SystemTime::now()),
                };
                let wants = sink.record(&record).await?;
                self.current = Some(Current {
                    record: record.path.to_string(),
                    manifest_path: None,
                    wants,
                    check: None,
                    size: 0,
                    expected: u64::MAX,
                });
            }
            Event::ManifestData(bytes) => {
                self.manifest.manifest_data(&bytes)?;
                let current =
                    self.current.as_mut().ok_or_else(|| PhysicalError::internal("manifest data"))?;
                current.size += bytes.len() as u64;
                if current.wants == Wants::Body && sink.data(bytes).await? == Flow::Stop {
                    current.wants = Wants::Skip;
                }
            }
            Event::ManifestEnd => {
                self.in_manifest = false;
                self.current = None;
                sink.end_file().await?;
            }
            Event::Notice(notice) => {
                tracing::warn!(code = %notice.code, "server: {}", notice.message);
                self.summary.warnings.push(notice.to_string());
            }
            Event::BackupEnd { end_lsn, timeline } => {
                self.ended = true;
                self.summary.end = Some((end_lsn, timeline));
                let start = self.summary.start.map(|(l, t)| (l.0, t));
                self.summary.verified_files = self.manifest.finish(start, Some((end_lsn.0, timeline)))?;
            }
            Event::Done => {}
        }
        Ok(())
    }

    async fn entry_start<S: RecordSink>(&mut self, entry: Entry, sink: &mut S) -> Result<(), PhysicalError> {
        let header = entry.header;
        let (record_path, manifest_path) = match entry.tablespace_oid {
            None => (format!("{DATA_ROOT}/{}", header.path), header.path.clone()),
            Some(oid) => (
                format!("{TABLESPACES_ROOT}/{oid}/{}", header.path),
                format!("pg_tblspc/{oid}/{}", header.path),
            ),
        };
        let path = RecordPath::new(record_path.clone()).map_err(|e| PhysicalError::Entry {
            path: header.path.clone(),
            problem: EntryProblem::Path(e),
        })?;
        let kind = match header.kind {
            pg_tar::EntryKind::File => EntryKind::File { size: Some(header.size) },
            pg_tar::EntryKind::Directory => EntryKind::Directory,
            pg_tar::EntryKind::Symlink => {
                let target = header.link_target.clone().unwrap_or_default();
                // A tablespace link points at the tablespace's copy in this backup, never at the
                // source's directory: a restore on the source's host must not use it.
                match tablespace_link_oid(entry.tablespace_oid, &header.path) {
                    Some(oid) => EntryKind::Symlink { target: format!("../..{TABLESPACES_ROOT}/{oid}") },
                    None => EntryKind::Symlink { target },
                }
            }
            pg_tar::EntryKind::Other(t) => {
                return Err(PhysicalError::Entry {
                    path: header.path.clone(),
                    problem: EntryProblem::TarType(char::from(t)),
                });
            }
        };
        let mut meta = Metadata {
            uid: u32::try_from(header.uid).ok(),
            gid: u32::try_from(header.gid).ok(),
            ..Metadata::new(header.mode & 0o7777, mtime(header.mtime))
        };
        self.entries += 1;
        if header.mtime >= self.unstable_since {
            // Modified during the backup or just before it: content read now may change within
            // the same second without a new mtime (see record_sink's cache rule).
            let backup_id = self.summary.start.map_or(0, |(lsn, _)| lsn.0);
            meta.mark_unstable(backup_id, self.entries);
        }
        let is_file = matches!(kind, EntryKind::File { .. });
        let wants = sink.record(&Record { path, kind, meta }).await?;
        if is_file {
            self.summary.files += 1;
            self.current = Some(Current {
                record: record_path,
                check: self.manifest.file_check(&manifest_path),
                manifest_path: Some(manifest_path),
                wants,
                size: 0,
                expected: header.size,
            });
        }
        Ok(())
    }

    async fn entry_data<S: RecordSink>(&mut self, bytes: Bytes, sink: &mut S) -> Result<(), PhysicalError> {
        let Some(current) = self.current.as_mut() else {
            return Err(PhysicalError::internal("entry data outside a file"));
        };
        current.size += bytes.len() as u64;
        self.summary.bytes += bytes.len() as u64;
        if let Some(check) = &mut current.check {
            check.update(&bytes);
        }
        // After a Stop the rest of the body is still read and verified, just not handed over.
        if current.wants == Wants::Body && sink.data(bytes).await? == Flow::Stop {
            current.wants = Wants::Skip;
        }
        Ok(())
    }

    async fn entry_end<S: RecordSink>(&mut self, sink: &mut S) -> Result<(), PhysicalError> {
        // Directories and links have no body and no `current`.
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        if current.size != current.expected {
            return Err(PhysicalError::Size {
                file: current.record,
                received: current.size,
                announced: current.expected,
            });
        }
        if let (Some(path), Some(check)) = (current.manifest_path, current.check) {
            self.manifest.file_received(path, check)?;
        }
        sink.end_file().await?;
        Ok(())
    }
}

/// The OID of a `pg_tblspc/<oid>` link of the main archive.
fn tablespace_link_oid(archive_oid: Option<u32>, path: &str) -> Option<u32> {
    if archive_oid.is_some() {
        return None;
    }
    path.strip_prefix("pg_tblspc/").filter(|rest| !rest.contains('/')).and_then(|oid| oid.parse().ok())
}

fn dir_record(path: &str, mode: u32) -> Record {
    Record {
        path: RecordPath::new(path).expect("valid constant path"),
        kind: EntryKind::Directory,
        meta: Metadata::new(mode, SystemTime::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_main_archive_pg_tblspc_links_are_tablespaces() {
        assert_eq!(tablespace_link_oid(None, "pg_tblspc/16384"), Some(16384));
        assert_eq!(tablespace_link_oid(None, "pg_tblspc/16384/x"), None);
        assert_eq!(tablespace_link_oid(None, "pg_tblspc/abc"), None);
        assert_eq!(tablespace_link_oid(Some(1), "pg_tblspc/16384"), None);
        assert_eq!(tablespace_link_oid(None, "base/1"), None);
    }
}
