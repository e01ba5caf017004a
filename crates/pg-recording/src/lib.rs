//! Recordings of the raw bytes a backup connection exchanged, and their replay through the
//! [`Decoder`](pg_basebackup::Decoder): a file format for people debugging a server or this
//! code, and for the test fixtures. Reading and writing are blocking `std::io`; decoding stays
//! in the sans-IO [`pg_basebackup`] crate.
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

use pg_basebackup::summary::{Chunking, Rechunker, Summary};
use pg_basebackup::{Compression, DecoderOptions};

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
    Io(std::io::Error),
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

// The message shows the IO error, so it is not returned again from `source()`.
impl From<std::io::Error> for RecordingError {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
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
    /// An empty `data` is one empty record (an empty marker label is still a marker).
    pub fn record(&mut self, direction: Direction, nanos: u64, data: &[u8]) -> Result<(), RecordingError> {
        // `chunks` of an empty slice yields nothing: the empty record is chained on.
        let pieces = data.chunks(MAX_RECORD_LEN as usize).chain(data.is_empty().then_some(data));
        for piece in pieces {
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

/// Which records of a recording make up the `BASE_BACKUP` response: the server bytes after the
/// last [`BASE_BACKUP_MARK`] up to the first client record that follows a server record; all
/// server bytes when there is no marker.
#[derive(Debug, Default)]
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

/// Reads the `BASE_BACKUP` response of a recording (plain or gzip) one recorded read at a time,
/// as [`replay`] selects it: memory stays bounded by the largest record. For callers that drive
/// their own decoder (the physical pipeline's offline replay).
#[derive(Debug)]
pub struct ResponseReader<R: Read> {
    reader: RecordingReader<R>,
    filter: ResponseFilter,
    taken: bool,
}

impl<R: Read> ResponseReader<R> {
    /// Opens a recording.
    pub fn new(recording: R) -> Result<Self, RecordingError> {
        Ok(Self { reader: RecordingReader::new(recording)?, filter: ResponseFilter::default(), taken: false })
    }

    /// The recording's metadata.
    pub fn meta(&self) -> &RecordingMeta {
        self.reader.meta()
    }

    /// The next server bytes of the response; `None` at the end of the recording. A recording
    /// holding a second `BASE_BACKUP` after response bytes were already returned is an error.
    pub fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, RecordingError> {
        while let Some(rec) = self.reader.next_record()? {
            match self.filter.take(&rec) {
                Take::Restart if self.taken => {
                    return Err(RecordingError::BadRecord {
                        offset: self.reader.offset,
                        detail: "a second BASE_BACKUP marker after the first response".into(),
                    });
                }
                Take::Restart | Take::Skip => {}
                Take::Server(_) => {
                    self.taken = true;
                    return Ok(Some(rec.data));
                }
            }
        }
        Ok(None)
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

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `recording` fuzz target, also replayed by the crate's tests.

    use crate::{Chunking, Record, RecordingReader, RecordingWriter, replay};

    /// `recording` target: reads `data` as a recording (plain or gzip). What it reads must write
    /// back through [`RecordingWriter`] and read again identically (round trip), and its replay
    /// must not depend on how the response is re-cut (chunk-split equivalence).
    pub fn recording(data: &[u8]) {
        let mut reader = match RecordingReader::new(data) {
            Ok(r) => r,
            Err(e) => {
                std::hint::black_box(e.to_string());
                return;
            }
        };
        let meta = reader.meta().clone();
        let mut records: Vec<Record> = Vec::new();
        let end = loop {
            match reader.next_record() {
                Ok(Some(r)) => records.push(r),
                Ok(None) => break None,
                Err(e) => break Some(e.to_string()),
            }
        };
        let mut w = RecordingWriter::new(Vec::new(), &meta).expect("read metadata writes back");
        for r in &records {
            w.record(r.direction, r.nanos, &r.data).expect("writing to a Vec");
        }
        let written = w.into_inner().expect("writing to a Vec");
        let mut again = RecordingReader::new(&written[..]).expect("a written recording reads");
        assert_eq!(again.meta(), &meta, "metadata round trip");
        for r in &records {
            assert_eq!(again.next_record().expect("round trip").as_ref(), Some(r), "record round trip");
        }
        assert!(again.next_record().expect("round trip").is_none());
        if end.is_none() {
            let a = replay(data, Chunking::AsRecorded).map_err(|e| e.to_string());
            let b = replay(data, Chunking::Random { seed: data.len() as u64, max: 97 })
                .map_err(|e| e.to_string());
            assert_eq!(a, b, "replay depends on the chunking");
        }
        std::hint::black_box(end);
    }
}

#[cfg(test)]
mod tests;
