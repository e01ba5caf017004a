//! Decoding a response into a comparable [`Summary`] (sizes and SHA-256 of every entry and of
//! the manifest), fed in pieces cut by a [`Chunking`]: what tests, fuzz targets and replays use
//! to check that the decoder gives the same result however its input is split.

use sha2::{Digest, Sha256};

use crate::Lsn;
use crate::decoder::{DecodeError, Decoder, DecoderOptions, Event, TablespaceInfo};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
/// How a replay or a test splits the response before feeding it to the decoder.
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
                        path: e.header.path_lossy().into_owned(),
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
pub struct Rechunker {
    sizes: PieceSizes,
    want: usize,
    carry: Vec<u8>,
    session: Session,
}

impl Rechunker {
    /// A decode with `opts` whose input will be re-cut per `chunking`.
    pub fn new(opts: DecoderOptions, chunking: Chunking) -> Self {
        let mut sizes = PieceSizes::new(chunking);
        let want = sizes.next_size();
        Self { sizes, want, carry: Vec::new(), session: Session::new(opts) }
    }

    /// Feeds the next run of bytes.
    pub fn push(&mut self, mut data: &[u8]) {
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

    /// Ends the input and returns the summary.
    pub fn finish(mut self) -> Summary {
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

/// The pieces of `data` per `chunking`, one after the other, without collecting them (the
/// fuzz target splits ~20 KB inputs down to single bytes on every execution).
pub fn pieces(data: &[u8], chunking: Chunking) -> impl Iterator<Item = &[u8]> {
    let mut sizes = PieceSizes::new(chunking);
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (a, b) = rest.split_at(sizes.next_size().min(rest.len()));
        rest = b;
        Some(a)
    })
}

/// Splits `data` into pieces per `chunking`.
pub fn split(data: &[u8], chunking: Chunking) -> Vec<&[u8]> {
    pieces(data, chunking).collect()
}
