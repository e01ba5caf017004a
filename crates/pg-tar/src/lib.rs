//! Sans-IO reader for the tar archives PostgreSQL's `BASE_BACKUP` sends.
//!
//! PostgreSQL writes plain POSIX ustar headers (`tarCreateHeader` in `src/port/tar.c`, offsets
//! in `src/include/pgtar.h`): no PAX, no GNU long names, no hard links, GNU base-256 numbers
//! only for values too large for octal. See `docs/protocol.md` §5 of the shared docs.
//!
//! [`TarReader`] is a state machine over 512-byte blocks. Feed it chunks split anywhere
//! ([`TarReader::feed`]) and pull [`TarEvent`]s ([`TarReader::next_event`]) until it answers
//! `Ok(None)`; then feed the next chunk. File data comes out as zero-copy slices of the chunks
//! fed; at most one 512-byte header is buffered. At the end of the input call
//! [`TarReader::finish`]: it accepts an archive that ends at an entry boundary with or without
//! the two-zero-block terminator (PostgreSQL ≤ 14 omits it, 15+ sends it) and refuses one cut
//! inside an entry.
//!
//! ```
//! use bytes::Bytes;
//! use pg_tar::{TarEvent, TarReader};
//! let mut r = TarReader::new();
//! r.feed(Bytes::new());
//! assert_eq!(r.next_event().unwrap(), None);
//! r.finish().unwrap(); // an empty archive is a clean boundary
//! ```

mod header;

use std::collections::VecDeque;

use bytes::{Buf, Bytes};

pub use header::{BLOCK_LEN, EntryKind, Header, header_checksums, is_zero_block, parse_number};

/// What the reader found next in the archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TarEvent {
    /// A new entry's header.
    EntryStart(Header),
    /// A piece of the current entry's data: a slice of a fed chunk, never a copy.
    Data(Bytes),
    /// The current entry's data and padding are complete.
    EntryEnd,
    /// The two zero blocks that terminate an archive were read.
    End,
}

/// What is wrong with a tar stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TarErrorKind {
    /// The `magic` field is neither POSIX `ustar\0` nor GNU `ustar `.
    #[error("not a ustar header (magic {magic:?})")]
    BadMagic {
        /// The six magic bytes found.
        magic: Vec<u8>,
    },
    /// The stored header checksum does not match the header bytes.
    #[error("header checksum mismatch: stored {stored}, computed {computed}")]
    BadChecksum {
        /// The value in the `chksum` field.
        stored: u64,
        /// The unsigned sum computed over the block.
        computed: u64,
    },
    /// A numeric field is empty, not octal / base-256, negative or overflows.
    #[error("invalid number in the {field} field")]
    BadNumber {
        /// The field's name.
        field: &'static str,
    },
    /// A typeflag PostgreSQL never writes and that this reader refuses to half-support.
    #[error("unsupported entry type '{}' ({what})", char::from(*typeflag).escape_default())]
    Unsupported {
        /// The typeflag byte.
        typeflag: u8,
        /// What it means.
        what: &'static str,
    },
    /// The name starts with `/`.
    #[error("absolute path")]
    AbsolutePath,
    /// The name has a `..` component.
    #[error("path has a '..' component")]
    DotDot,
    /// The name has an empty or `.` component inside it (`a//b`, `a/./b`).
    #[error("path has an empty or '.' component")]
    NotNormal,
    /// The name is empty (after removing `./` and trailing `/`).
    #[error("empty name")]
    EmptyName,
    /// A NUL byte inside a name, followed by more name bytes.
    #[error("NUL byte inside the {field} field")]
    NulInName {
        /// The field's name.
        field: &'static str,
    },
    /// A name is not UTF-8.
    #[error("the {field} field is not valid UTF-8")]
    NotUtf8 {
        /// The field's name.
        field: &'static str,
    },
    /// A regular file (or other non-directory) name ends with `/`.
    #[error("a non-directory name ends with '/'")]
    TrailingSlash,
    /// A symlink without a target.
    #[error("symlink with an empty target")]
    EmptyLinkTarget,
    /// A directory or symlink header declares data.
    #[error("directory or symlink declares {size} data bytes")]
    SizeOnNonFile {
        /// The declared size.
        size: u64,
    },
    /// Padding after file data is not zero.
    #[error("non-zero padding after the entry's data")]
    NonZeroPadding,
    /// One zero block followed by a header (or by the end of input).
    #[error("a single zero block where the two-block terminator or a header was expected")]
    LoneZeroBlock,
    /// Non-zero bytes after the terminator.
    #[error("non-zero data after the end-of-archive terminator")]
    DataAfterEnd,
    /// The input ended inside a header, data or padding.
    #[error("archive truncated inside {what}")]
    Truncated {
        /// Where the input ended.
        what: &'static str,
    },
    /// [`TarReader::finish`] was called before every fed byte was consumed.
    #[error("finish called with {bytes} fed bytes not yet read")]
    Unconsumed {
        /// How many bytes were left.
        bytes: usize,
    },
    /// The reader already failed; it does not resynchronise.
    #[error("the reader already failed")]
    Poisoned,
}

/// A [`TarErrorKind`] with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("tar: {kind} (header at offset {offset}{})", path.as_ref().map(|p| format!(", entry {p:?}")).unwrap_or_default())]
pub struct TarError {
    /// Byte offset in the tar stream of the offending header (or zero block).
    pub offset: u64,
    /// The entry's path (raw, as far as it could be read), when the error concerns an entry.
    pub path: Option<String>,
    /// What is wrong.
    pub kind: TarErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Expecting a header or the first terminator block; `hdr` holds `hdr_len` bytes of it.
    Header,
    /// Inside an entry's data.
    Data { remaining: u64 },
    /// Inside the padding after the data.
    Padding { remaining: u64 },
    /// Data and padding done (or none): `EntryEnd` is due.
    EntryDone,
    /// One zero block seen: the next block must be zero too.
    Zero1,
    /// Terminator read: only zero bytes may follow.
    End,
    /// An error was returned.
    Failed,
}

/// The sans-IO tar reader; see the [crate docs](crate).
#[derive(Debug)]
pub struct TarReader {
    chunks: VecDeque<Bytes>,
    hdr: [u8; BLOCK_LEN],
    hdr_len: usize,
    state: State,
    /// Stream offset of the next byte to consume.
    offset: u64,
    /// Offset of the current entry's header (or of the current zero block).
    entry_offset: u64,
    entry_path: Option<String>,
    end_emitted: bool,
}

impl Default for TarReader {
    fn default() -> Self {
        Self::new()
    }
}

impl TarReader {
    /// A reader at the start of an archive.
    pub fn new() -> Self {
        Self {
            chunks: VecDeque::new(),
            hdr: [0; BLOCK_LEN],
            hdr_len: 0,
            state: State::Header,
            offset: 0,
            entry_offset: 0,
            entry_path: None,
            end_emitted: false,
        }
    }

    /// Appends a chunk of the archive. For bounded memory, drain [`TarReader::next_event`]
    /// until `Ok(None)` before feeding the next chunk.
    pub fn feed(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.chunks.push_back(chunk);
        }
    }

    /// Bytes of the archive consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes fed but not yet consumed.
    pub fn buffered(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether the two-block terminator has been read.
    pub fn is_ended(&self) -> bool {
        self.state == State::End
    }

    fn fail(&mut self, kind: TarErrorKind) -> TarError {
        self.state = State::Failed;
        self.chunks.clear();
        TarError { offset: self.entry_offset, path: self.entry_path.clone(), kind }
    }

    /// Copies bytes into the header buffer; true once it holds a whole block.
    fn fill_block(&mut self) -> bool {
        while self.hdr_len < BLOCK_LEN {
            let Some(front) = self.chunks.front_mut() else { return false };
            let n = (BLOCK_LEN - self.hdr_len).min(front.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&front[..n]);
            front.advance(n);
            if front.is_empty() {
                self.chunks.pop_front();
            }
            self.hdr_len += n;
            self.offset += n as u64;
        }
        true
    }

    /// The next event, `Ok(None)` when more input is needed (or after the end).
    pub fn next_event(&mut self) -> Result<Option<TarEvent>, TarError> {
        loop {
            match self.state {
                State::Failed => {
                    return Err(TarError {
                        offset: self.entry_offset,
                        path: None,
                        kind: TarErrorKind::Poisoned,
                    });
                }
                State::Header | State::Zero1 => {
                    if self.hdr_len == 0 && self.state == State::Header {
                        // In `Zero1` the offset stays on the first zero block.
                        self.entry_offset = self.offset;
                        self.entry_path = None;
                    }
                    if !self.fill_block() {
                        return Ok(None);
                    }
                    self.hdr_len = 0;
                    if is_zero_block(&self.hdr) {
                        if self.state == State::Header {
                            self.state = State::Zero1;
                            continue;
                        }
                        self.state = State::End;
                        self.end_emitted = true;
                        return Ok(Some(TarEvent::End));
                    }
                    if self.state == State::Zero1 {
                        return Err(self.fail(TarErrorKind::LoneZeroBlock));
                    }
                    let header = match Header::parse(&self.hdr) {
                        Ok(h) => h,
                        Err(kind) => {
                            self.entry_path = Some(header::raw_name(&self.hdr));
                            return Err(self.fail(kind));
                        }
                    };
                    self.entry_path = Some(header.path_lossy().into_owned());
                    self.state = if header.size > 0 {
                        State::Data { remaining: header.size }
                    } else {
                        State::EntryDone
                    };
                    return Ok(Some(TarEvent::EntryStart(header)));
                }
                State::Data { remaining } => {
                    let Some(front) = self.chunks.front_mut() else { return Ok(None) };
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(front.len());
                    let data = front.split_to(n);
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining > 0 {
                        State::Data { remaining }
                    } else {
                        // `offset` is now the end of the data; padding is up to the next block.
                        let pad = (BLOCK_LEN as u64 - self.offset % BLOCK_LEN as u64) % BLOCK_LEN as u64;
                        if pad > 0 { State::Padding { remaining: pad } } else { State::EntryDone }
                    };
                    return Ok(Some(TarEvent::Data(data)));
                }
                State::Padding { remaining } => {
                    let Some(front) = self.chunks.front_mut() else { return Ok(None) };
                    let n = usize::try_from(remaining).unwrap_or(usize::MAX).min(front.len());
                    if front[..n].iter().any(|&b| b != 0) {
                        return Err(self.fail(TarErrorKind::NonZeroPadding));
                    }
                    front.advance(n);
                    if front.is_empty() {
                        self.chunks.pop_front();
                    }
                    self.offset += n as u64;
                    let remaining = remaining - n as u64;
                    self.state = if remaining > 0 { State::Padding { remaining } } else { State::EntryDone };
                }
                State::EntryDone => {
                    self.state = State::Header;
                    return Ok(Some(TarEvent::EntryEnd));
                }
                State::End => {
                    let Some(front) = self.chunks.pop_front() else { return Ok(None) };
                    if let Some(i) = front.iter().position(|&b| b != 0) {
                        self.entry_offset = self.offset + i as u64;
                        self.entry_path = None;
                        return Err(self.fail(TarErrorKind::DataAfterEnd));
                    }
                    self.offset += front.len() as u64;
                }
            }
        }
    }

    /// Declares the end of the input. `Ok` if the archive ended at an entry boundary (with or
    /// without the terminator); an error if it was cut inside a header, data, padding or the
    /// terminator, or if fed bytes were not read yet.
    pub fn finish(&mut self) -> Result<(), TarError> {
        let left = self.buffered();
        if left > 0 && self.state != State::Failed {
            return Err(self.fail(TarErrorKind::Unconsumed { bytes: left }));
        }
        let what = match self.state {
            State::Header if self.hdr_len == 0 => return Ok(()),
            State::End => return Ok(()),
            State::Failed => {
                return Err(TarError { offset: self.entry_offset, path: None, kind: TarErrorKind::Poisoned });
            }
            State::Header => "a header",
            State::Data { .. } => "an entry's data",
            State::Padding { .. } => "an entry's padding",
            State::EntryDone => "an entry (its end was not read)",
            State::Zero1 if self.hdr_len == 0 => return Err(self.fail(TarErrorKind::LoneZeroBlock)),
            State::Zero1 => "the end-of-archive terminator",
        };
        Err(self.fail(TarErrorKind::Truncated { what }))
    }
}

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `tar` fuzz target, also replayed by the crate's tests.

    use super::*;

    /// Everything a reader produced: events (data coalesced per entry, so that the split does
    /// not show), the error that stopped it, and the result of `finish`.
    #[derive(Debug, PartialEq, Eq)]
    struct Run {
        headers: Vec<Header>,
        data: Vec<Vec<u8>>,
        ended: bool,
        error: Option<TarError>,
        finished: Option<Result<(), TarError>>,
    }

    fn run(input: &Bytes, mut sizes: impl Iterator<Item = usize>) -> Run {
        let mut r = TarReader::new();
        let mut out =
            Run { headers: Vec::new(), data: Vec::new(), ended: false, error: None, finished: None };
        let mut pos = 0;
        let mut expected: u64 = 0;
        let mut in_entry = false;
        loop {
            if pos < input.len() {
                let end = (pos + sizes.next().unwrap_or(usize::MAX).max(1)).min(input.len());
                r.feed(input.slice(pos..end));
                pos = end;
            }
            loop {
                match r.next_event() {
                    Ok(Some(TarEvent::EntryStart(h))) => {
                        assert!(!in_entry, "EntryStart inside an entry");
                        check_header(&h);
                        expected = h.size;
                        in_entry = true;
                        out.headers.push(h);
                        out.data.push(Vec::new());
                    }
                    Ok(Some(TarEvent::Data(d))) => {
                        assert!(in_entry && !d.is_empty());
                        let buf = out.data.last_mut().expect("data inside an entry");
                        buf.extend_from_slice(&d);
                        assert!(buf.len() as u64 <= expected, "more data than the header's size");
                    }
                    Ok(Some(TarEvent::EntryEnd)) => {
                        assert!(in_entry);
                        let got = out.data.last().map_or(0, Vec::len) as u64;
                        assert_eq!(expected, got, "data events add up to the declared size");
                        in_entry = false;
                    }
                    Ok(Some(TarEvent::End)) => {
                        assert!(!in_entry && !out.ended);
                        out.ended = true;
                    }
                    Ok(None) => break,
                    Err(e) => {
                        std::hint::black_box(e.to_string());
                        out.error = Some(e);
                        return out;
                    }
                }
            }
            if pos >= input.len() {
                break;
            }
        }
        // Every byte fed was consumed or refused; the offset is the whole input.
        assert_eq!(r.offset(), input.len() as u64);
        out.finished = Some(r.finish());
        if out.finished == Some(Ok(())) {
            assert!(!in_entry, "finish accepted an archive cut inside an entry");
        }
        out
    }

    /// The documented rules of [`Header::path`] and of the header fields.
    fn check_header(h: &Header) {
        let path = &h.path[..];
        assert!(!path.is_empty() && !path.starts_with(b"/") && !path.ends_with(b"/"), "{:?}", h.path_lossy());
        for comp in path.split(|&b| b == b'/') {
            assert!(!comp.is_empty() && comp != b"." && comp != b"..", "unclean path {:?}", h.path_lossy());
        }
        assert!(!path.contains(&0));
        assert_eq!(h.link_target.is_some(), h.kind == EntryKind::Symlink);
        if matches!(h.kind, EntryKind::Directory | EntryKind::Symlink) {
            assert_eq!(h.size, 0, "a directory or symlink with data");
        }
        assert!(h.padding() < BLOCK_LEN as u64 && (h.size + h.padding()).is_multiple_of(BLOCK_LEN as u64));
    }

    /// Reads `data[1..]` as a tar stream twice, in one piece and in pieces whose sizes are drawn
    /// from `data[0]`: both runs must give the same headers, data, error and end (chunk-split
    /// equivalence). Headers must follow their documented rules (clean relative paths: no
    /// empty, `.` or `..` component) and data events must add up to the declared sizes.
    pub fn tar(data: &[u8]) {
        let Some((&first, rest)) = data.split_first() else { return };
        let input = Bytes::copy_from_slice(rest);
        let max = usize::from(first).max(1) * 7;
        let mut state = u64::from(first) | 1;
        let sizes = std::iter::repeat_with(move || {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % max as u64) as usize + 1
        });
        let whole = run(&input, std::iter::empty());
        let split = run(&input, sizes);
        assert_eq!(whole, split, "the reader's output depends on how the input is split");
        std::hint::black_box(whole.finished.map(|r| r.map_err(|e| e.to_string())));
    }
}

#[cfg(test)]
mod tests;
