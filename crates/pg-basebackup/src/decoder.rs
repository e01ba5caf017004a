//! The `BASE_BACKUP` response state machine (`docs/protocol.md` §4 and Appendix A).
//!
//! Sources: `perform_base_backup` / `SendBackupHeader` / `SendXlogRecPtrResult` in
//! `src/backend/replication/basebackup.c` (REL_12_STABLE … REL_14_STABLE) and
//! `src/backend/backup/basebackup.c` + `basebackup_copy.c` (REL_15_STABLE … REL_18_STABLE).

use std::collections::{HashSet, VecDeque};

use bytes::Bytes;
use pg_tar::{TarEvent, TarReader};
use pg_wire::{DbError, Frame, FrameError, Framer, frame::MAX_MESSAGE_LEN};

use crate::compress::{Compression, DecompressError, Decompressor};
use pg_wire::replication::Lsn;

use crate::msg;

/// Size of the buffer decompressed output is produced into (one `EntryData` at most this big).
const DECOMPRESS_CHUNK: usize = 64 * 1024;

/// What the decoder must know about the request it decodes the answer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecoderOptions {
    /// Server major version (10 … 18): ≤ 14 one COPY per tablespace, 15+ the typed copystream.
    pub server_major: u32,
    /// Whether `MANIFEST` was requested (13+).
    pub manifest: bool,
    /// Server-side compression requested (15+).
    pub compression: Compression,
}

/// One row of the tablespace result set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TablespaceInfo {
    /// `spcoid`; `None` for the main data directory.
    pub oid: Option<u32>,
    /// `spclocation`; `None` for the main data directory.
    pub location: Option<String>,
    /// `size` in kB when `PROGRESS` was requested.
    pub size_kb: Option<i64>,
}

/// An archive (one tablespace) of the backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveInfo {
    /// Position in the tablespace list (the main data directory is the last one).
    pub index: usize,
    /// `base.tar` / `<oid>.tar` (+ `.gz`/`.lz4`/`.zst`); from the `n` message on 15+, by
    /// PostgreSQL's own convention on ≤ 14 (not on the wire there).
    pub name: String,
    /// The tablespace this archive holds.
    pub tablespace: TablespaceInfo,
}

/// A tar entry of an archive; `header.path` is relative to the archive (to the data directory
/// for `base.tar`, to the tablespace location for `<oid>.tar`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Index of the archive ([`ArchiveInfo::index`]).
    pub archive: usize,
    /// The tablespace oid of the archive, `None` for the main data directory.
    pub tablespace_oid: Option<u32>,
    /// The tar header.
    pub header: pg_tar::Header,
}

/// What the decoder produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Start position and the tablespace list (result sets 1 and 2).
    BackupStart {
        /// Backup start LSN.
        start_lsn: Lsn,
        /// Start timeline.
        timeline: u32,
        /// The tablespaces, main data directory last.
        tablespaces: Vec<TablespaceInfo>,
    },
    /// A new archive begins.
    ArchiveStart(ArchiveInfo),
    /// A tar entry begins.
    EntryStart(Box<Entry>),
    /// A piece of the current entry's data (zero-copy from the CopyData when uncompressed).
    EntryData(Bytes),
    /// The current entry is complete.
    EntryEnd,
    /// The current archive is complete and well-formed.
    ArchiveEnd {
        /// Index of the archive.
        index: usize,
    },
    /// 15+: cumulative uncompressed bytes sent so far (`p` message).
    Progress {
        /// Bytes done.
        bytes_done: u64,
    },
    /// The `backup_manifest` begins.
    ManifestStart,
    /// A piece of the manifest, passed through as received.
    ManifestData(Bytes),
    /// The manifest is complete.
    ManifestEnd,
    /// A `NoticeResponse` (e.g. checksum-failure warnings, "WAL archiving is not enabled").
    Notice(Box<DbError>),
    /// A `ParameterStatus` that arrived during the backup.
    ParameterStatus {
        /// Parameter name.
        name: String,
        /// New value.
        value: String,
    },
    /// End position (the result set after the data).
    BackupEnd {
        /// Backup end LSN.
        end_lsn: Lsn,
        /// End timeline.
        timeline: u32,
    },
    /// CommandComplete and ReadyForQuery seen: the backup succeeded. Only now.
    Done,
}

/// A response that cannot be a correct `BASE_BACKUP` answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The server sent an `ErrorResponse`: the backup failed (the connection stays usable; the
    /// decoder consumes input up to `ReadyForQuery`, see [`Decoder::ready_for_query`]).
    #[error("server error during BASE_BACKUP: {0}")]
    Server(Box<DbError>),
    /// Bytes that are not a sequence of messages.
    #[error("framing error at stream offset {offset}: {error}")]
    Frame {
        /// Offset of the message in the response.
        offset: u64,
        /// What is wrong.
        error: FrameError,
    },
    /// A message that has no place in the current state.
    #[error("unexpected message '{}' at stream offset {offset} while {state}", char::from(*tag).escape_default())]
    Unexpected {
        /// What the decoder was waiting for.
        state: &'static str,
        /// The message type byte (for a CopyData sub-message, its type byte).
        tag: u8,
        /// Offset of the message in the response.
        offset: u64,
    },
    /// A message whose body is wrong.
    #[error("malformed message '{}' at stream offset {offset} while {state}: {detail}", char::from(*tag).escape_default())]
    Malformed {
        /// What the decoder was waiting for.
        state: &'static str,
        /// The message type byte.
        tag: u8,
        /// Offset of the message in the response.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// A broken tar archive.
    #[error("archive {archive:?} (message at stream offset {offset}): {error}")]
    Tar {
        /// Archive name.
        archive: String,
        /// Offset of the last message fed to the archive.
        offset: u64,
        /// The tar error, with its own offset inside the archive.
        error: pg_tar::TarError,
    },
    /// A broken compressed archive.
    #[error("archive {archive:?} (message at stream offset {offset}): {error}")]
    Decompress {
        /// Archive name.
        archive: String,
        /// Offset of the last message fed to the archive.
        offset: u64,
        /// What is wrong.
        error: DecompressError,
    },
    /// The input ended before the backup was complete.
    #[error("response truncated at stream offset {offset} while {state}")]
    Truncated {
        /// What the decoder was waiting for.
        state: &'static str,
        /// Bytes of response seen.
        offset: u64,
    },
    /// A combination of options this decoder (or the server version) does not support.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The decoder failed earlier and does not resynchronise.
    #[error("the decoder already failed")]
    Poisoned,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rs {
    Desc,
    Rows,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Start(Rs),
    Tablespaces(Rs),
    /// ≤ 14: waiting for the CopyOutResponse of archive `n` (or the manifest's, or the end set).
    LegacyNext(usize),
    /// ≤ 14: inside the COPY of archive `n`.
    LegacyArchive(usize),
    /// ≤ 14: inside the manifest COPY.
    LegacyManifest,
    /// 15+: waiting for the single CopyOutResponse.
    StreamOpen,
    /// 15+: inside the copystream.
    Stream,
    End(Rs),
    /// End set complete; waiting for the final CommandComplete.
    FinalComplete,
    /// Waiting for ReadyForQuery.
    Ready,
    Done,
    /// A server error was reported: skip to ReadyForQuery.
    Draining,
    Failed,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Start(Rs::Desc) => "waiting for the start-position RowDescription",
            Phase::Start(Rs::Rows) => "reading the start-position result set",
            Phase::Tablespaces(Rs::Desc) => "waiting for the tablespace RowDescription",
            Phase::Tablespaces(Rs::Rows) => "reading the tablespace result set",
            Phase::LegacyNext(_) => "waiting for the next CopyOutResponse (PG <= 14)",
            Phase::LegacyArchive(_) => "in an archive COPY (PG <= 14)",
            Phase::LegacyManifest => "in the manifest COPY (PG <= 14)",
            Phase::StreamOpen => "waiting for the CopyOutResponse (PG 15+)",
            Phase::Stream => "in the copystream (PG 15+)",
            Phase::End(Rs::Desc) => "waiting for the end-position RowDescription",
            Phase::End(Rs::Rows) => "reading the end-position result set",
            Phase::FinalComplete => "waiting for the final CommandComplete",
            Phase::Ready => "waiting for ReadyForQuery",
            Phase::Done => "after ReadyForQuery (backup complete)",
            Phase::Draining => "skipping to ReadyForQuery after a server error",
            Phase::Failed => "failed",
        }
    }
}

/// The archive being decoded.
#[derive(Debug)]
struct Archive {
    info: ArchiveInfo,
    tar: TarReader,
    decomp: Option<Box<dyn Decompressor>>,
    /// Compressed input not yet given to the decompressor.
    pending: Bytes,
    out: Vec<u8>,
}

/// Sans-IO decoder of the messages that follow a `BASE_BACKUP` command.
///
/// Feed it frames ([`Decoder::feed_frame`]) or raw bytes ([`Decoder::feed_bytes`]), then call
/// [`Decoder::poll_event`] until it returns `Ok(None)` before feeding more: input is decoded
/// lazily, so memory stays bounded by what was fed. At the end of the input call
/// [`Decoder::finish`], which fails unless [`Event::Done`] was produced.
#[derive(Debug)]
pub struct Decoder {
    opts: DecoderOptions,
    phase: Phase,
    frames: VecDeque<Frame>,
    framer: Framer,
    queue: VecDeque<Event>,
    /// Offset of the next message to process / of the current one.
    next_offset: u64,
    offset: u64,
    start: Option<(Lsn, u32)>,
    end: Option<(Lsn, u32)>,
    tablespaces: Vec<TablespaceInfo>,
    archive: Option<Archive>,
    archives_seen: usize,
    names: HashSet<String>,
    manifest_seen: bool,
    in_manifest: bool,
    progress: u64,
    /// The server error that failed the backup, reported again by `finish`.
    server_error: Option<DecodeError>,
}

type Result<T, E = DecodeError> = std::result::Result<T, E>;

impl Decoder {
    /// A decoder for the answer to a `BASE_BACKUP` sent with `opts`.
    pub fn new(opts: DecoderOptions) -> Result<Self> {
        if opts.server_major < 10 {
            return Err(DecodeError::Unsupported(format!("server major {} (< 10)", opts.server_major)));
        }
        if opts.manifest && opts.server_major < 13 {
            return Err(DecodeError::Unsupported("a backup manifest needs PostgreSQL 13+".into()));
        }
        if opts.compression != Compression::None && opts.server_major < 15 {
            return Err(DecodeError::Unsupported("server-side compression needs PostgreSQL 15+".into()));
        }
        Ok(Self {
            opts,
            phase: Phase::Start(Rs::Desc),
            frames: VecDeque::new(),
            framer: Framer::new(MAX_MESSAGE_LEN),
            queue: VecDeque::new(),
            next_offset: 0,
            offset: 0,
            start: None,
            end: None,
            tablespaces: Vec::new(),
            archive: None,
            archives_seen: 0,
            names: HashSet::new(),
            manifest_seen: false,
            in_manifest: false,
            progress: 0,
            server_error: None,
        })
    }

    /// The options given at construction.
    pub fn options(&self) -> DecoderOptions {
        self.opts
    }

    /// Queues one backend message.
    pub fn feed_frame(&mut self, frame: Frame) {
        self.frames.push_back(frame);
    }

    /// Queues raw response bytes (split anywhere); framed with the `MAX_MESSAGE_LEN` cap.
    pub fn feed_bytes(&mut self, bytes: &[u8]) {
        self.framer.feed(bytes);
    }

    /// Whether the backup completed ([`Event::Done`] was produced).
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done && self.server_error.is_none()
    }

    /// After a [`DecodeError::Server`]: whether the `ReadyForQuery` that follows it was
    /// consumed (the connection can take a new command). Also true after [`Event::Done`].
    pub fn ready_for_query(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Bytes of response consumed so far (as messages).
    pub fn bytes_consumed(&self) -> u64 {
        self.next_offset
    }

    fn fail(&mut self, e: DecodeError) -> DecodeError {
        if let DecodeError::Server(_) = e {
            self.phase = Phase::Draining;
            self.server_error = Some(e.clone());
        } else {
            self.phase = Phase::Failed;
        }
        self.archive = None;
        self.queue.clear();
        e
    }

    fn unexpected(&self, tag: u8) -> DecodeError {
        DecodeError::Unexpected { state: self.phase.describe(), tag, offset: self.offset }
    }

    fn malformed(&self, tag: u8, detail: impl Into<String>) -> DecodeError {
        DecodeError::Malformed {
            state: self.phase.describe(),
            tag,
            offset: self.offset,
            detail: detail.into(),
        }
    }

    /// The next event; `Ok(None)` when more input is needed (or after [`Event::Done`]).
    /// After an error the decoder is terminal, except that after [`DecodeError::Server`] it
    /// keeps consuming input (yielding `Ok(None)`, or notices) until `ReadyForQuery`.
    pub fn poll_event(&mut self) -> Result<Option<Event>> {
        match self.poll_inner() {
            Ok(ev) => Ok(ev),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn poll_inner(&mut self) -> Result<Option<Event>> {
        loop {
            if self.phase == Phase::Failed {
                return Err(DecodeError::Poisoned);
            }
            if let Some(ev) = self.queue.pop_front() {
                return Ok(Some(ev));
            }
            if let Some(ev) = self.archive_event()? {
                return Ok(Some(ev));
            }
            let frame = match self.frames.pop_front() {
                Some(f) => f,
                None => match self.framer.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => return Ok(None),
                    Err(error) => return Err(DecodeError::Frame { offset: self.next_offset, error }),
                },
            };
            self.offset = self.next_offset;
            self.next_offset += 5 + frame.body.len() as u64;
            self.handle(frame)?;
        }
    }

    /// Pulls the next tar event of the current archive, decompressing as needed.
    fn archive_event(&mut self) -> Result<Option<Event>> {
        let offset = self.offset;
        let Some(a) = self.archive.as_mut() else { return Ok(None) };
        loop {
            let tar_err =
                |a: &Archive, error| DecodeError::Tar { archive: a.info.name.clone(), offset, error };
            match a.tar.next_event() {
                Ok(Some(ev)) => {
                    return Ok(Some(match ev {
                        TarEvent::EntryStart(header) => Event::EntryStart(Box::new(Entry {
                            archive: a.info.index,
                            tablespace_oid: a.info.tablespace.oid,
                            header,
                        })),
                        TarEvent::Data(d) => Event::EntryData(d),
                        TarEvent::EntryEnd => Event::EntryEnd,
                        TarEvent::End => continue,
                    }));
                }
                Ok(None) => {}
                Err(e) => return Err(tar_err(a, e)),
            }
            let Some(d) = a.decomp.as_mut() else { return Ok(None) };
            a.out.resize(DECOMPRESS_CHUNK, 0);
            let (used, made) = d.step(&a.pending, &mut a.out).map_err(|error| DecodeError::Decompress {
                archive: a.info.name.clone(),
                offset,
                error,
            })?;
            let _ = a.pending.split_to(used);
            if made > 0 {
                a.tar.feed(Bytes::copy_from_slice(&a.out[..made]));
            } else if used == 0 {
                return Ok(None);
            }
        }
    }

    /// Feeds archive bytes (called only when the archive has drained all its events).
    fn archive_data(&mut self, data: Bytes) {
        if let Some(a) = self.archive.as_mut() {
            if a.decomp.is_some() {
                a.pending = data;
            } else {
                a.tar.feed(data);
            }
        }
    }

    /// Closes the current archive: the compressed stream and the tar must end cleanly.
    fn end_archive(&mut self) -> Result<()> {
        let offset = self.offset;
        if let Some(mut a) = self.archive.take() {
            if let Some(d) = a.decomp.as_mut() {
                d.finish().map_err(|error| DecodeError::Decompress {
                    archive: a.info.name.clone(),
                    offset,
                    error,
                })?;
            }
            a.tar.finish().map_err(|error| DecodeError::Tar {
                archive: a.info.name.clone(),
                offset,
                error,
            })?;
            self.queue.push_back(Event::ArchiveEnd { index: a.info.index });
        }
        Ok(())
    }

    fn start_archive(&mut self, index: usize, name: String) {
        let info = ArchiveInfo { index, name, tablespace: self.tablespaces[index].clone() };
        self.queue.push_back(Event::ArchiveStart(info.clone()));
        self.archive = Some(Archive {
            info,
            tar: TarReader::new(),
            decomp: self.opts.compression.decompressor(),
            pending: Bytes::new(),
            out: Vec::new(),
        });
        self.archives_seen += 1;
    }

    fn expected_name(&self, index: usize) -> String {
        let base = match self.tablespaces[index].oid {
            None => "base".to_owned(),
            Some(oid) => oid.to_string(),
        };
        format!("{base}.tar{}", self.opts.compression.suffix())
    }

    fn handle(&mut self, f: Frame) -> Result<()> {
        let tag = f.tag;
        match (tag, self.phase) {
            (_, Phase::Done) => return Err(self.unexpected(tag)),
            (b'Z', Phase::Draining) => {
                self.phase = Phase::Done;
                return Ok(());
            }
            // After a server error only notices and ReadyForQuery matter.
            (_, Phase::Draining) if tag != b'N' => return Ok(()),
            (b'E', _) => {
                let e = DbError::parse(&f.body).map_err(|e| self.malformed(tag, e.to_string()))?;
                return Err(DecodeError::Server(Box::new(e)));
            }
            (b'N', _) => {
                let n = DbError::parse(&f.body).map_err(|e| self.malformed(tag, e.to_string()))?;
                self.queue.push_back(Event::Notice(Box::new(n)));
                return Ok(());
            }
            (b'S', _) => {
                let (name, value) = msg::parameter_status(&f).map_err(|e| self.malformed(tag, e))?;
                self.queue.push_back(Event::ParameterStatus { name, value });
                return Ok(());
            }
            _ => {}
        }
        match self.phase {
            Phase::Start(rs) | Phase::End(rs) => self.position_set(rs, f),
            Phase::Tablespaces(rs) => self.tablespace_set(rs, f),
            Phase::LegacyNext(n) => {
                if tag == b'H' {
                    msg::copy_out_response(&f).map_err(|e| self.malformed(tag, e))?;
                    if n < self.tablespaces.len() {
                        self.phase = Phase::LegacyArchive(n);
                        let name = self.expected_name(n);
                        self.start_archive(n, name);
                    } else if self.opts.manifest && !self.manifest_seen {
                        self.phase = Phase::LegacyManifest;
                        self.manifest_seen = true;
                        self.queue.push_back(Event::ManifestStart);
                    } else {
                        return Err(self.malformed(tag, "more COPY streams than tablespaces (+ manifest)"));
                    }
                    Ok(())
                } else if tag == b'T' && n >= self.tablespaces.len() {
                    if self.opts.manifest && !self.manifest_seen {
                        return Err(self.malformed(tag, "the requested manifest was not sent"));
                    }
                    self.phase = Phase::End(Rs::Desc);
                    self.position_set(Rs::Desc, f)
                } else {
                    Err(self.unexpected(tag))
                }
            }
            Phase::LegacyArchive(n) => match tag {
                b'd' => {
                    self.archive_data(f.body);
                    Ok(())
                }
                b'c' => {
                    self.end_archive()?;
                    self.phase = Phase::LegacyNext(n + 1);
                    Ok(())
                }
                _ => Err(self.unexpected(tag)),
            },
            Phase::LegacyManifest => match tag {
                b'd' => {
                    self.queue.push_back(Event::ManifestData(f.body));
                    Ok(())
                }
                b'c' => {
                    self.queue.push_back(Event::ManifestEnd);
                    self.phase = Phase::LegacyNext(self.tablespaces.len() + 1);
                    Ok(())
                }
                _ => Err(self.unexpected(tag)),
            },
            Phase::StreamOpen => {
                if tag != b'H' {
                    return Err(self.unexpected(tag));
                }
                msg::copy_out_response(&f).map_err(|e| self.malformed(tag, e))?;
                self.phase = Phase::Stream;
                Ok(())
            }
            Phase::Stream => match tag {
                b'd' => self.stream_message(f.body),
                b'c' => {
                    if self.archives_seen == 0 {
                        return Err(self.malformed(tag, "CopyDone before any archive"));
                    }
                    self.end_archive()?;
                    if self.archives_seen != self.tablespaces.len() {
                        return Err(self.malformed(
                            tag,
                            format!(
                                "{} archives for {} tablespaces",
                                self.archives_seen,
                                self.tablespaces.len()
                            ),
                        ));
                    }
                    if self.opts.manifest && !self.manifest_seen {
                        return Err(self.malformed(tag, "the requested manifest was not sent"));
                    }
                    if self.in_manifest {
                        self.in_manifest = false;
                        self.queue.push_back(Event::ManifestEnd);
                    }
                    self.phase = Phase::End(Rs::Desc);
                    Ok(())
                }
                _ => Err(self.unexpected(tag)),
            },
            Phase::FinalComplete => {
                if tag != b'C' {
                    return Err(self.unexpected(tag));
                }
                // The tag is "SELECT" on 12/13 and "BASE_BACKUP" on 14+: not checked.
                msg::command_complete(&f).map_err(|e| self.malformed(tag, e))?;
                self.phase = Phase::Ready;
                Ok(())
            }
            Phase::Ready => {
                if tag != b'Z' {
                    return Err(self.unexpected(tag));
                }
                self.phase = Phase::Done;
                self.queue.push_back(Event::Done);
                Ok(())
            }
            Phase::Done | Phase::Draining | Phase::Failed => Err(self.unexpected(tag)),
        }
    }

    /// A CopyData of the 15+ copystream: `n`, `d`, `p` or `m` (`basebackup_copy.c`).
    fn stream_message(&mut self, body: Bytes) -> Result<()> {
        let Some(&kind) = body.first() else {
            return Err(self.malformed(b'd', "empty CopyData (no type byte)"));
        };
        match kind {
            b'n' => {
                if self.in_manifest || self.manifest_seen {
                    return Err(self.malformed(kind, "new archive after the manifest"));
                }
                let (name, location) = msg::new_archive(&body[1..]).map_err(|e| self.malformed(kind, e))?;
                self.end_archive()?;
                let index = self.archives_seen;
                if index >= self.tablespaces.len() {
                    return Err(self.malformed(kind, format!("archive {name:?} beyond the tablespace list")));
                }
                let expected = self.expected_name(index);
                if name != expected || !self.names.insert(name.clone()) {
                    return Err(self.malformed(kind, format!("archive name {name:?}, expected {expected:?}")));
                }
                let want = self.tablespaces[index].location.clone().unwrap_or_default();
                if location != want {
                    return Err(self.malformed(
                        kind,
                        format!("archive {name:?} location {location:?}, tablespace list says {want:?}"),
                    ));
                }
                self.start_archive(index, name);
                Ok(())
            }
            b'd' => {
                let data = body.slice(1..);
                if self.in_manifest {
                    if !data.is_empty() {
                        self.queue.push_back(Event::ManifestData(data));
                    }
                } else if self.archive.is_some() {
                    self.archive_data(data);
                } else {
                    return Err(self.malformed(kind, "archive data before any 'n' message"));
                }
                Ok(())
            }
            b'p' => {
                if body.len() != 9 {
                    return Err(
                        self.malformed(kind, format!("progress payload of {} bytes, not 8", body.len() - 1))
                    );
                }
                if self.archives_seen == 0 {
                    return Err(self.malformed(kind, "progress before any archive"));
                }
                let v = i64::from_be_bytes(body[1..9].try_into().unwrap_or([0; 8]));
                let v =
                    u64::try_from(v).map_err(|_| self.malformed(kind, format!("negative progress {v}")))?;
                if v < self.progress {
                    return Err(
                        self.malformed(kind, format!("progress went back from {} to {v}", self.progress))
                    );
                }
                self.progress = v;
                self.queue.push_back(Event::Progress { bytes_done: v });
                Ok(())
            }
            b'm' => {
                if body.len() != 1 {
                    return Err(self.malformed(kind, "manifest message with a payload"));
                }
                if !self.opts.manifest {
                    return Err(self.malformed(kind, "a manifest that was not requested"));
                }
                if self.manifest_seen {
                    return Err(self.malformed(kind, "a second manifest"));
                }
                self.end_archive()?;
                if self.archives_seen != self.tablespaces.len() {
                    return Err(self.malformed(
                        kind,
                        format!(
                            "manifest after {} archives of {}",
                            self.archives_seen,
                            self.tablespaces.len()
                        ),
                    ));
                }
                self.manifest_seen = true;
                self.in_manifest = true;
                self.queue.push_back(Event::ManifestStart);
                Ok(())
            }
            other => Err(self.malformed(other, "unknown copystream message type")),
        }
    }

    /// Result sets 1 and 3: one row `recptr` (text LSN), `tli` (text integer).
    fn position_set(&mut self, rs: Rs, f: Frame) -> Result<()> {
        let tag = f.tag;
        let is_start = matches!(self.phase, Phase::Start(_));
        match (rs, tag) {
            (Rs::Desc, b'T') => {
                let cols = msg::row_description(&f).map_err(|e| self.malformed(tag, e))?;
                if cols != ["recptr", "tli"] {
                    return Err(self.malformed(tag, format!("columns {cols:?}, expected recptr, tli")));
                }
                self.phase = if is_start { Phase::Start(Rs::Rows) } else { Phase::End(Rs::Rows) };
                Ok(())
            }
            (Rs::Rows, b'D') => {
                let have = if is_start { self.start.is_some() } else { self.end.is_some() };
                if have {
                    return Err(self.malformed(tag, "more than one row"));
                }
                let row = msg::data_row(&f).map_err(|e| self.malformed(tag, e))?;
                let [Some(lsn), Some(tli)] = &row[..] else {
                    return Err(self.malformed(tag, "expected two non-NULL columns"));
                };
                let lsn = std::str::from_utf8(lsn).ok().and_then(|s| s.parse::<Lsn>().ok());
                let lsn = lsn.ok_or_else(|| self.malformed(tag, "recptr is not an LSN"))?;
                let tli =
                    std::str::from_utf8(tli).ok().and_then(|s| s.parse::<u32>().ok()).filter(|&t| t > 0);
                let tli = tli.ok_or_else(|| self.malformed(tag, "tli is not a timeline number"))?;
                if is_start {
                    self.start = Some((lsn, tli));
                } else {
                    self.end = Some((lsn, tli));
                }
                Ok(())
            }
            (Rs::Rows, b'C') => {
                msg::command_complete(&f).map_err(|e| self.malformed(tag, e))?;
                if is_start {
                    if self.start.is_none() {
                        return Err(self.malformed(tag, "start-position result set without a row"));
                    }
                    self.phase = Phase::Tablespaces(Rs::Desc);
                } else {
                    let Some((end_lsn, timeline)) = self.end else {
                        return Err(self.malformed(tag, "end-position result set without a row"));
                    };
                    self.queue.push_back(Event::BackupEnd { end_lsn, timeline });
                    self.phase = Phase::FinalComplete;
                }
                Ok(())
            }
            _ => Err(self.unexpected(tag)),
        }
    }

    /// Result set 2: `spcoid`, `spclocation`, `size`; the main data directory last.
    fn tablespace_set(&mut self, rs: Rs, f: Frame) -> Result<()> {
        let tag = f.tag;
        match (rs, tag) {
            (Rs::Desc, b'T') => {
                let cols = msg::row_description(&f).map_err(|e| self.malformed(tag, e))?;
                if cols != ["spcoid", "spclocation", "size"] {
                    return Err(
                        self.malformed(tag, format!("columns {cols:?}, expected spcoid, spclocation, size"))
                    );
                }
                self.phase = Phase::Tablespaces(Rs::Rows);
                Ok(())
            }
            (Rs::Rows, b'D') => {
                let row = msg::data_row(&f).map_err(|e| self.malformed(tag, e))?;
                if row.len() != 3 {
                    return Err(self.malformed(tag, format!("{} columns, expected 3", row.len())));
                }
                if self.tablespaces.last().is_some_and(|t| t.oid.is_none()) {
                    return Err(self.malformed(tag, "a tablespace row after the main data directory's"));
                }
                let text = |v: &Option<Bytes>| v.as_ref().map(|b| String::from_utf8(b.to_vec()));
                let oid = match text(&row[0]) {
                    None => None,
                    Some(Ok(s)) => {
                        Some(s.parse::<u32>().map_err(|_| self.malformed(tag, "spcoid is not an oid"))?)
                    }
                    Some(Err(_)) => return Err(self.malformed(tag, "spcoid is not UTF-8")),
                };
                let location = match text(&row[1]) {
                    None => None,
                    Some(Ok(s)) => Some(s),
                    Some(Err(_)) => return Err(self.malformed(tag, "spclocation is not UTF-8")),
                };
                let size_kb = match text(&row[2]) {
                    None => None,
                    Some(Ok(s)) => {
                        Some(s.parse::<i64>().map_err(|_| self.malformed(tag, "size is not an int8"))?)
                    }
                    Some(Err(_)) => return Err(self.malformed(tag, "size is not UTF-8")),
                };
                match (oid, &location) {
                    (None, None) => {}
                    (Some(o), Some(l)) if !l.is_empty() => {
                        if o == 0 || self.tablespaces.iter().any(|t| t.oid == Some(o)) {
                            return Err(self.malformed(tag, format!("invalid or duplicate spcoid {o}")));
                        }
                    }
                    _ => {
                        return Err(
                            self.malformed(tag, "spcoid and spclocation must both be set or both NULL")
                        );
                    }
                }
                self.tablespaces.push(TablespaceInfo { oid, location, size_kb });
                Ok(())
            }
            (Rs::Rows, b'C') => {
                msg::command_complete(&f).map_err(|e| self.malformed(tag, e))?;
                if self.tablespaces.last().is_none_or(|t| t.oid.is_some()) {
                    return Err(self.malformed(tag, "tablespace list without the main data directory last"));
                }
                let (start_lsn, timeline) = self.start.unwrap_or_default();
                self.queue.push_back(Event::BackupStart {
                    start_lsn,
                    timeline,
                    tablespaces: self.tablespaces.clone(),
                });
                self.phase =
                    if self.opts.server_major >= 15 { Phase::StreamOpen } else { Phase::LegacyNext(0) };
                Ok(())
            }
            _ => Err(self.unexpected(tag)),
        }
    }

    /// Declares the end of the input: `Ok` only if the backup completed (after draining every
    /// event with [`Decoder::poll_event`]).
    pub fn finish(&mut self) -> Result<()> {
        if let Some(e) = &self.server_error {
            return Err(e.clone());
        }
        match self.phase {
            Phase::Done if self.queue.is_empty() && self.framer.buffered() == 0 && self.frames.is_empty() => {
                Ok(())
            }
            Phase::Done => Err(DecodeError::Unexpected {
                state: "after ReadyForQuery (backup complete)",
                tag: self.frames.front().map_or(0, |f| f.tag),
                offset: self.next_offset,
            }),
            Phase::Failed => Err(DecodeError::Poisoned),
            p => Err(DecodeError::Truncated { state: p.describe(), offset: self.next_offset }),
        }
    }
}
