//! Recordings of the raw bytes a backup connection exchanged, and their replay through the
//! [`Decoder`](crate::Decoder).
//!
//! # Format (`PGPRECv1`)
//!
//! All integers are big-endian.
//!
//! ```text
//! magic      9 bytes   "PGPRECv1\n"
//! meta_len   u32       length of the metadata, at most 1 MiB
//! meta       JSON      UTF-8 object (see RecordingMeta):
//!                      {"server_major": 15, "server_version": "15.18 (Debian …)",
//!                       "command": "BASE_BACKUP ( … )", "manifest": true,
//!                       "compression": "none", "meta": { free-form }}
//! records, until the end of the file:
//!   direction u8       b'S' server→client bytes, b'C' client→server bytes,
//!                      b'M' a marker (payload = UTF-8 label)
//!   nanos     u64      monotonic nanoseconds since the recording started
//!   len       u32      payload length, at most MAX_RECORD_LEN (16 MiB)
//!   payload   len bytes
//! ```
//!
//! A recording may also be stored gzip-compressed (`.pgrec.gz`, e.g. the committed fixtures):
//! [`RecordingReader`] and [`replay`] recognise the gzip magic and decompress on the fly, so
//! offsets in their errors count bytes of the decompressed recording.
//!
//! Records are recorded at the plaintext protocol layer (after TLS), one per read or write.
//! The connection code writes a marker record labelled [`BASE_BACKUP_MARK`] right before it
//! sends the `BASE_BACKUP` query: the response to decode is the server bytes after the marker,
//! up to the first client record that follows a server record (or the end). A recording without that marker is taken to hold
//! only the response. A recording never holds a password: the writer is fed what crosses the
//! wire after authentication, or the caller must leave the authentication exchange out.

use std::io::{Read, Write};

use sha2::{Digest, Sha256};

use crate::Lsn;
use crate::compress::Compression;
use crate::decoder::{DecodeError, Decoder, DecoderOptions, Event, TablespaceInfo};

/// The magic line that starts every recording.
pub const MAGIC: &[u8; 9] = b"PGPRECv1\n";
/// Largest metadata block accepted.
pub const MAX_META_LEN: u32 = 1 << 20;
/// Largest payload of one record; the writer splits bigger writes.
pub const MAX_RECORD_LEN: u32 = 16 << 20;
/// The marker label written just before the `BASE_BACKUP` query is sent.
pub const BASE_BACKUP_MARK: &str = "BASE_BACKUP";

/// Direction of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Server to client (`S`).
    Server,
    /// Client to server (`C`).
    Client,
    /// A marker (`M`) written by the recorder, not bytes on the wire.
    Mark,
}

impl Direction {
    fn byte(self) -> u8 {
        match self {
            Direction::Server => b'S',
            Direction::Client => b'C',
            Direction::Mark => b'M',
        }
    }
}

/// One record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Who sent the bytes.
    pub direction: Direction,
    /// Monotonic nanoseconds since the recording started.
    pub nanos: u64,
    /// The bytes.
    pub data: Vec<u8>,
}

/// The metadata block of a recording.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordingMeta {
    /// Server major version.
    pub server_major: u32,
    /// Full `server_version` parameter.
    pub server_version: String,
    /// The `BASE_BACKUP` command text sent.
    pub command: String,
    /// Whether a manifest was requested.
    pub manifest: bool,
    /// Server-side compression requested.
    pub compression: Compression,
    /// Free-form metadata (tool versions, host, test name…).
    pub meta: serde_json::Value,
}

impl RecordingMeta {
    /// The decoder options this recording was made with.
    pub fn decoder_options(&self) -> DecoderOptions {
        DecoderOptions {
            server_major: self.server_major,
            manifest: self.manifest,
            compression: self.compression,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "server_major": self.server_major,
            "server_version": self.server_version,
            "command": self.command,
            "manifest": self.manifest,
            "compression": self.compression.option_value(),
            "meta": self.meta,
        })
    }

    fn from_json(v: &serde_json::Value) -> Result<Self, RecordingError> {
        let bad = |what: &str| RecordingError::BadMeta(format!("missing or invalid {what:?}"));
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned).ok_or_else(|| bad(k));
        Ok(Self {
            server_major: v
                .get("server_major")
                .and_then(|x| x.as_u64())
                .and_then(|x| u32::try_from(x).ok())
                .ok_or_else(|| bad("server_major"))?,
            server_version: s("server_version")?,
            command: s("command")?,
            manifest: v.get("manifest").and_then(|x| x.as_bool()).ok_or_else(|| bad("manifest"))?,
            compression: Compression::from_option_value(&s("compression")?)
                .ok_or_else(|| bad("compression"))?,
            meta: v.get("meta").cloned().unwrap_or(serde_json::Value::Null),
        })
    }
}

/// A recording that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// IO error of the underlying reader or writer.
    #[error("recording IO: {0}")]
    Io(#[from] std::io::Error),
    /// Not a `PGPRECv1` recording.
    #[error("not a PGPRECv1 recording (bad magic)")]
    BadMagic,
    /// The metadata block is invalid.
    #[error("recording metadata: {0}")]
    BadMeta(String),
    /// A record is invalid.
    #[error("record at byte {offset}: {detail}")]
    BadRecord {
        /// Offset of the record in the recording.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
}

/// Writes a recording.
#[derive(Debug)]
pub struct RecordingWriter<W: Write> {
    out: W,
}

impl<W: Write> RecordingWriter<W> {
    /// Writes the magic and the metadata.
    pub fn new(mut out: W, meta: &RecordingMeta) -> Result<Self, RecordingError> {
        let json = serde_json::to_vec(&meta.to_json()).map_err(|e| RecordingError::BadMeta(e.to_string()))?;
        let len = u32::try_from(json.len()).ok().filter(|&l| l <= MAX_META_LEN);
        let len = len.ok_or_else(|| RecordingError::BadMeta("metadata larger than 1 MiB".into()))?;
        out.write_all(MAGIC)?;
        out.write_all(&len.to_be_bytes())?;
        out.write_all(&json)?;
        Ok(Self { out })
    }

    /// Appends bytes seen in one direction (split into records of at most `MAX_RECORD_LEN`).
    pub fn record(&mut self, direction: Direction, nanos: u64, data: &[u8]) -> Result<(), RecordingError> {
        for piece in data.chunks(MAX_RECORD_LEN as usize) {
            self.out.write_all(&[direction.byte()])?;
            self.out.write_all(&nanos.to_be_bytes())?;
            self.out.write_all(&(piece.len() as u32).to_be_bytes())?;
            self.out.write_all(piece)?;
        }
        Ok(())
    }

    /// Appends a marker record (e.g. [`BASE_BACKUP_MARK`]).
    pub fn mark(&mut self, nanos: u64, label: &str) -> Result<(), RecordingError> {
        self.record(Direction::Mark, nanos, label.as_bytes())
    }

    /// Flushes and returns the writer.
    pub fn into_inner(mut self) -> Result<W, RecordingError> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The two bytes that start every gzip member (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

type GzInput<R> = flate2::read::MultiGzDecoder<std::io::Chain<std::io::Cursor<[u8; 2]>, R>>;

/// A recording's bytes, as stored or gunzipped.
enum Input<R: Read> {
    Plain(R),
    Gzip(Box<GzInput<R>>),
}

impl<R: Read> Read for Input<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Input::Plain(r) => r.read(buf),
            Input::Gzip(r) => r.read(buf),
        }
    }
}

impl<R: Read> std::fmt::Debug for Input<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Input::Plain(_) => "Plain",
            Input::Gzip(_) => "Gzip",
        })
    }
}

/// Reads a recording, plain or gzip-compressed, from any `Read`.
#[derive(Debug)]
pub struct RecordingReader<R: Read> {
    input: Input<R>,
    meta: RecordingMeta,
    offset: u64,
}

fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, std::io::Error> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Reads exactly `len` bytes into a new `Vec` that grows with the bytes actually read, never
/// reserved from `len` (a length read from the recording): a header declaring 16 MiB followed
/// by nothing costs a few bytes, not 16 MiB. `UnexpectedEof` if fewer bytes follow.
fn read_exact_growing<R: Read>(r: &mut R, len: u32) -> Result<Vec<u8>, std::io::Error> {
    let mut data = Vec::new();
    r.take(u64::from(len)).read_to_end(&mut data)?;
    if data.len() < len as usize {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(data)
}

impl<R: Read> RecordingReader<R> {
    /// Reads and checks the magic and the metadata; a gzip-compressed recording is
    /// decompressed on the fly.
    pub fn new(mut raw: R) -> Result<Self, RecordingError> {
        let mut first = [0u8; 2];
        let full = read_full(&mut raw, &mut first).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => RecordingError::BadMagic,
            _ => e.into(),
        })?;
        if !full {
            return Err(RecordingError::BadMagic);
        }
        let mut magic = [0u8; 9];
        let mut input = if first == GZIP_MAGIC {
            let mut input = Input::Gzip(Box::new(flate2::read::MultiGzDecoder::new(
                std::io::Cursor::new(first).chain(raw),
            )));
            if !read_full(&mut input, &mut magic).unwrap_or(false) {
                return Err(RecordingError::BadMagic);
            }
            input
        } else {
            magic[..2].copy_from_slice(&first);
            let mut input = Input::Plain(raw);
            if !read_full(&mut input, &mut magic[2..]).unwrap_or(false) {
                return Err(RecordingError::BadMagic);
            }
            input
        };
        if &magic != MAGIC {
            return Err(RecordingError::BadMagic);
        }
        let mut len = [0u8; 4];
        if !read_full(&mut input, &mut len)? {
            return Err(RecordingError::BadMeta("missing".into()));
        }
        let len = u32::from_be_bytes(len);
        if len > MAX_META_LEN {
            return Err(RecordingError::BadMeta(format!("{len} bytes, more than 1 MiB")));
        }
        let json = read_exact_growing(&mut input, len).map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => RecordingError::BadMeta("truncated".into()),
            _ => e.into(),
        })?;
        let v: serde_json::Value =
            serde_json::from_slice(&json).map_err(|e| RecordingError::BadMeta(e.to_string()))?;
        let meta = RecordingMeta::from_json(&v)?;
        Ok(Self { input, meta, offset: 13 + u64::from(len) })
    }

    /// The metadata.
    pub fn meta(&self) -> &RecordingMeta {
        &self.meta
    }

    /// The next record, `None` at a clean end of file.
    pub fn next_record(&mut self) -> Result<Option<Record>, RecordingError> {
        let offset = self.offset;
        let bad = |detail: String| RecordingError::BadRecord { offset, detail };
        let mut head = [0u8; 13];
        match read_full(&mut self.input, &mut head) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(bad("truncated header".into()));
            }
            Err(e) => return Err(e.into()),
        }
        let direction = match head[0] {
            b'S' => Direction::Server,
            b'C' => Direction::Client,
            b'M' => Direction::Mark,
            d => return Err(bad(format!("unknown direction byte {d:#04x}"))),
        };
        let nanos = u64::from_be_bytes(head[1..9].try_into().unwrap_or([0; 8]));
        let len = u32::from_be_bytes(head[9..13].try_into().unwrap_or([0; 4]));
        if len > MAX_RECORD_LEN {
            return Err(bad(format!("record of {len} bytes, more than {MAX_RECORD_LEN}")));
        }
        let data = match read_exact_growing(&mut self.input, len) {
            Ok(data) => data,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(bad("truncated payload".into()));
            }
            Err(e) => return Err(e.into()),
        };
        self.offset += 13 + u64::from(len);
        Ok(Some(Record { direction, nanos, data }))
    }
}

/// How replay splits the server bytes before feeding them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunking {
    /// One feed per recorded read.
    AsRecorded,
    /// Fixed-size pieces (at least 1 byte).
    Fixed(usize),
    /// Pseudo-random sizes from 1 to the given maximum, from a seed (deterministic).
    Random {
        /// Seed of the generator.
        seed: u64,
        /// Largest piece.
        max: usize,
    },
}

/// One tar entry as seen by a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntrySummary {
    /// Path relative to the archive.
    pub path: String,
    /// Entry kind.
    pub kind: pg_tar::EntryKind,
    /// Symlink target.
    pub link_target: Option<String>,
    /// Bytes of data received.
    pub size: u64,
    /// Lowercase hex SHA-256 of the data.
    pub sha256: String,
}

/// One archive as seen by a replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// Archive name.
    pub name: String,
    /// Tablespace oid (`None`: main data directory).
    pub tablespace_oid: Option<u32>,
    /// Entries in order.
    pub entries: Vec<EntrySummary>,
    /// Whether `ArchiveEnd` was seen.
    pub complete: bool,
}

/// What a decode produced, in a form tests can compare.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Summary {
    /// Start LSN and timeline.
    pub start: Option<(Lsn, u32)>,
    /// The tablespace list.
    pub tablespaces: Vec<TablespaceInfo>,
    /// The archives.
    pub archives: Vec<ArchiveSummary>,
    /// Manifest length and SHA-256 (hex), if one came complete.
    pub manifest: Option<(u64, String)>,
    /// `SQLSTATE message` of each notice.
    pub notices: Vec<String>,
    /// Progress values.
    pub progress: Vec<u64>,
    /// End LSN and timeline.
    pub end: Option<(Lsn, u32)>,
    /// Whether `Done` was produced.
    pub done: bool,
    /// The error that ended the decode, if any (`finish` included).
    pub error: Option<DecodeError>,
}

struct Collector {
    s: Summary,
    entry_hash: Option<Sha256>,
    manifest: Option<(u64, Sha256)>,
}

impl Collector {
    fn event(&mut self, ev: Event) {
        let s = &mut self.s;
        match ev {
            Event::BackupStart { start_lsn, timeline, tablespaces } => {
                s.start = Some((start_lsn, timeline));
                s.tablespaces = tablespaces;
            }
            Event::ArchiveStart(a) => s.archives.push(ArchiveSummary {
                name: a.name,
                tablespace_oid: a.tablespace.oid,
                entries: Vec::new(),
                complete: false,
            }),
            Event::EntryStart(e) => {
                if let Some(a) = s.archives.last_mut() {
                    a.entries.push(EntrySummary {
                        path: e.header.path,
                        kind: e.header.kind,
                        link_target: e.header.link_target,
                        size: 0,
                        sha256: String::new(),
                    });
                }
                self.entry_hash = Some(Sha256::new());
            }
            Event::EntryData(d) => {
                if let Some(e) = s.archives.last_mut().and_then(|a| a.entries.last_mut()) {
                    e.size += d.len() as u64;
                }
                if let Some(h) = self.entry_hash.as_mut() {
                    h.update(&d);
                }
            }
            Event::EntryEnd => {
                if let (Some(e), Some(h)) =
                    (s.archives.last_mut().and_then(|a| a.entries.last_mut()), self.entry_hash.take())
                {
                    e.sha256 = hex_lower(&h.finalize());
                }
            }
            Event::ArchiveEnd { .. } => {
                if let Some(a) = s.archives.last_mut() {
                    a.complete = true;
                }
            }
            Event::Progress { bytes_done } => s.progress.push(bytes_done),
            Event::ManifestStart => self.manifest = Some((0, Sha256::new())),
            Event::ManifestData(d) => {
                if let Some((n, h)) = self.manifest.as_mut() {
                    *n += d.len() as u64;
                    h.update(&d);
                }
            }
            Event::ManifestEnd => {
                if let Some((n, h)) = self.manifest.take() {
                    s.manifest = Some((n, hex_lower(&h.finalize())));
                }
            }
            Event::Notice(n) => s.notices.push(format!("{} {}", n.code, n.message)),
            Event::ParameterStatus { .. } => {}
            Event::BackupEnd { end_lsn, timeline } => s.end = Some((end_lsn, timeline)),
            Event::Done => s.done = true,
        }
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The piece sizes a [`Chunking`] produces, one after the other.
struct PieceSizes {
    chunking: Chunking,
    state: u64,
}

impl PieceSizes {
    fn new(chunking: Chunking) -> Self {
        let state = match chunking {
            Chunking::Random { seed, .. } => seed | 1,
            _ => 0,
        };
        Self { chunking, state }
    }

    fn next_size(&mut self) -> usize {
        match self.chunking {
            Chunking::AsRecorded => usize::MAX,
            Chunking::Fixed(n) => n.max(1),
            Chunking::Random { max, .. } => {
                // xorshift64*: deterministic and dependency-free.
                self.state ^= self.state >> 12;
                self.state ^= self.state << 25;
                self.state ^= self.state >> 27;
                let r = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
                (r % max.max(1) as u64) as usize + 1
            }
        }
    }
}

/// A decoder and a collector: what replay and [`decode_pieces`] drive.
struct Session {
    c: Collector,
    dec: Option<Decoder>,
}

impl Session {
    fn new(opts: DecoderOptions) -> Self {
        let mut c = Collector { s: Summary::default(), entry_hash: None, manifest: None };
        let dec = match Decoder::new(opts) {
            Ok(d) => Some(d),
            Err(e) => {
                c.s.error = Some(e);
                None
            }
        };
        Self { c, dec }
    }

    /// Feeds one piece and collects the events; after an error, pieces are ignored.
    fn feed(&mut self, piece: &[u8]) {
        let Some(dec) = self.dec.as_mut() else { return };
        dec.feed_bytes(piece);
        loop {
            match dec.poll_event() {
                Ok(Some(ev)) => self.c.event(ev),
                Ok(None) => break,
                Err(e) => {
                    self.c.s.error = Some(e);
                    self.dec = None;
                    return;
                }
            }
        }
    }

    fn finish(mut self) -> Summary {
        if let Some(mut dec) = self.dec.take()
            && let Err(e) = dec.finish()
        {
            self.c.s.error = Some(e);
        }
        self.c.s
    }
}

/// Re-cuts a stream of byte runs into the pieces of a [`Chunking`], carrying at most one
/// piece's worth of bytes between runs, and feeds them to a [`Session`].
struct Rechunker {
    sizes: PieceSizes,
    want: usize,
    carry: Vec<u8>,
    session: Session,
}

impl Rechunker {
    fn new(opts: DecoderOptions, chunking: Chunking) -> Self {
        let mut sizes = PieceSizes::new(chunking);
        let want = sizes.next_size();
        Self { sizes, want, carry: Vec::new(), session: Session::new(opts) }
    }

    fn push(&mut self, mut data: &[u8]) {
        if self.sizes.chunking == Chunking::AsRecorded {
            self.session.feed(data);
            return;
        }
        while !data.is_empty() {
            if self.carry.is_empty() && data.len() >= self.want {
                let (piece, rest) = data.split_at(self.want);
                self.session.feed(piece);
                data = rest;
            } else {
                let take = (self.want - self.carry.len()).min(data.len());
                self.carry.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.carry.len() < self.want {
                    return;
                }
                self.session.feed(&self.carry);
                self.carry.clear();
            }
            self.want = self.sizes.next_size();
        }
    }

    fn finish(mut self) -> Summary {
        if !self.carry.is_empty() {
            self.session.feed(&self.carry);
        }
        self.session.finish()
    }
}

/// Decodes a response given as byte pieces and summarises the events (sizes and SHA-256 of
/// every entry and of the manifest). Decoding errors end up in [`Summary::error`].
pub fn decode_pieces<'a>(opts: DecoderOptions, pieces: impl IntoIterator<Item = &'a [u8]>) -> Summary {
    let mut session = Session::new(opts);
    for piece in pieces {
        session.feed(piece);
        if session.dec.is_none() {
            break;
        }
    }
    session.finish()
}

/// Splits `data` into pieces per `chunking`.
pub fn split(data: &[u8], chunking: Chunking) -> Vec<&[u8]> {
    let mut sizes = PieceSizes::new(chunking);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (a, b) = rest.split_at(sizes.next_size().min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// Which records of a recording make up the `BASE_BACKUP` response: the server bytes after the
/// last [`BASE_BACKUP_MARK`] up to the first client record that follows a server record; all
/// server bytes when there is no marker.
#[derive(Default)]
struct ResponseFilter {
    marked: bool,
    server_seen: bool,
    ended: bool,
}

/// What to do with one record.
enum Take<'a> {
    /// A (new) marker: forget the server bytes taken so far.
    Restart,
    /// Server bytes of the response.
    Server(&'a [u8]),
    /// Not part of the response.
    Skip,
}

impl ResponseFilter {
    fn take<'a>(&mut self, rec: &'a Record) -> Take<'a> {
        match rec.direction {
            Direction::Mark if rec.data == BASE_BACKUP_MARK.as_bytes() => {
                *self = Self { marked: true, ..Self::default() };
                Take::Restart
            }
            Direction::Mark => Take::Skip,
            Direction::Server if !self.ended => {
                self.server_seen = true;
                Take::Server(&rec.data)
            }
            Direction::Server => Take::Skip,
            // The query itself follows the marker; the next command ends the response.
            Direction::Client => {
                if self.marked && self.server_seen {
                    self.ended = true;
                }
                Take::Skip
            }
        }
    }
}

/// Reads a recording (plain or gzip) and replays the `BASE_BACKUP` response it holds through a
/// [`Decoder`] configured from its metadata, one record at a time: memory stays bounded by the
/// largest record, whatever the recording's size.
pub fn replay<R: Read>(recording: R, chunking: Chunking) -> Result<Summary, RecordingError> {
    let mut r = RecordingReader::new(recording)?;
    let opts = r.meta().decoder_options();
    let mut filter = ResponseFilter::default();
    let mut run = Rechunker::new(opts, chunking);
    while let Some(rec) = r.next_record()? {
        match filter.take(&rec) {
            Take::Restart => run = Rechunker::new(opts, chunking),
            Take::Server(data) => run.push(data),
            Take::Skip => {}
        }
    }
    Ok(run.finish())
}

/// The metadata and the server bytes of the `BASE_BACKUP` response in a recording (plain or
/// gzip), one `Vec` per recorded read, as [`replay`] selects them. Holds the whole response in
/// memory: meant for tests and tools that need the raw stream.
pub fn response_chunks<R: Read>(recording: R) -> Result<(RecordingMeta, Vec<Vec<u8>>), RecordingError> {
    let mut r = RecordingReader::new(recording)?;
    let mut filter = ResponseFilter::default();
    let mut chunks = Vec::new();
    while let Some(rec) = r.next_record()? {
        match filter.take(&rec) {
            Take::Restart => chunks.clear(),
            Take::Server(_) => chunks.push(rec.data),
            Take::Skip => {}
        }
    }
    Ok((r.meta, chunks))
}
