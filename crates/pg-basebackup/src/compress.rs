//! Streaming decompressors for server-side compressed archives (PostgreSQL 15+ `COMPRESSION`:
//! `bbsink_gzip`, `bbsink_lz4`, `bbsink_zstd` in `src/backend/backup/basebackup_{gzip,lz4,zstd}.c`).
//!
//! Each one is sans-IO: [`Decompressor::step`] takes some input and writes some output into a
//! caller-provided buffer. Internal buffers are bounded: the gzip header (at most
//! [`MAX_GZIP_HEADER`]), one LZ4 block (at most 4 MiB) plus its 64 KiB dictionary window, one
//! zstd block (at most 128 KiB) plus the frame's window (capped by [`MAX_ZSTD_WINDOW`]).
//! Concatenated gzip members, LZ4 frames and zstd frames are all accepted, as are skippable
//! LZ4/zstd frames; checksums (gzip CRC-32 and size, LZ4 block and content xxHash32, zstd
//! content checksum) are verified.

use std::fmt;

use flate2::{Crc, FlushDecompress, Status};

/// Which compression the server applied to each archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Compression {
    /// No server-side compression: plain tar.
    #[default]
    None,
    /// `COMPRESSION 'gzip'`: one gzip member per archive (`.tar.gz`).
    Gzip,
    /// `COMPRESSION 'lz4'`: one LZ4 frame per archive (`.tar.lz4`).
    Lz4,
    /// `COMPRESSION 'zstd'`: one zstd frame per archive (`.tar.zst`).
    Zstd,
}

impl Compression {
    /// The suffix PostgreSQL appends to archive names (`basebackup_{gzip,lz4,zstd}.c`).
    pub fn suffix(self) -> &'static str {
        match self {
            Compression::None => "",
            Compression::Gzip => ".gz",
            Compression::Lz4 => ".lz4",
            Compression::Zstd => ".zst",
        }
    }

    /// The option value for `COMPRESSION` in `BASE_BACKUP`.
    pub fn option_value(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Parses the `COMPRESSION` option value.
    pub fn from_option_value(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Compression::None,
            "gzip" => Compression::Gzip,
            "lz4" => Compression::Lz4,
            "zstd" => Compression::Zstd,
            _ => return None,
        })
    }

    pub(crate) fn decompressor(self) -> Option<Box<dyn Decompressor>> {
        match self {
            Compression::None => None,
            Compression::Gzip => Some(Box::new(Gzip::new())),
            Compression::Lz4 => Some(Box::new(Lz4::new())),
            Compression::Zstd => Some(Box::new(Zstd::new())),
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.option_value())
    }
}

/// A compressed archive that cannot be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{format} stream at compressed offset {offset}: {message}")]
pub struct DecompressError {
    /// `gzip`, `lz4` or `zstd`.
    pub format: &'static str,
    /// Offset in the compressed stream where the problem was found.
    pub offset: u64,
    /// What is wrong.
    pub message: String,
}

/// Largest gzip header accepted (the optional name, comment and extra fields included).
pub const MAX_GZIP_HEADER: usize = 64 * 1024;
/// Largest zstd window accepted: 128 MiB, enough for `COMPRESSION_DETAIL 'long'` (window log 27).
pub const MAX_ZSTD_WINDOW: u64 = 128 << 20;

/// A streaming decompressor, fed chunks, writing into a caller's buffer.
pub(crate) trait Decompressor: Send + fmt::Debug {
    /// Consumes a prefix of `input` and writes decompressed bytes into `out`; returns
    /// `(consumed, produced)`. `(0, 0)` with a non-empty `out` means that `input` is empty and
    /// nothing is pending: more input is needed.
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), DecompressError>;
    /// End of the compressed input: an error unless it ended between frames/members, after at
    /// least one.
    fn finish(&mut self) -> Result<(), DecompressError>;
}

// ===== gzip (RFC 1952) =====

#[derive(Debug)]
enum GzState {
    Header,
    Body,
    Trailer,
}

/// gzip members (RFC 1952): header parsed here, deflate by `flate2::Decompress` (raw), CRC-32
/// and ISIZE checked.
#[derive(Debug)]
pub(crate) struct Gzip {
    state: GzState,
    buf: Vec<u8>,
    inflate: flate2::Decompress,
    crc: Crc,
    members: u64,
    offset: u64,
}

impl Gzip {
    pub(crate) fn new() -> Self {
        Self {
            state: GzState::Header,
            buf: Vec::new(),
            inflate: flate2::Decompress::new(false),
            crc: Crc::new(),
            members: 0,
            offset: 0,
        }
    }

    fn err(&self, message: impl Into<String>) -> DecompressError {
        DecompressError { format: "gzip", offset: self.offset, message: message.into() }
    }

    /// Length of the complete header in `buf`, `None` if more bytes are needed.
    fn header_len(&self) -> Result<Option<usize>, DecompressError> {
        let b = &self.buf;
        if b.len() < 10 {
            if b.first().is_some_and(|&x| x != 0x1f) || b.get(1).is_some_and(|&x| x != 0x8b) {
                return Err(self.err("not a gzip member (bad magic)"));
            }
            return Ok(None);
        }
        if b[0] != 0x1f || b[1] != 0x8b {
            return Err(self.err("not a gzip member (bad magic)"));
        }
        if b[2] != 8 {
            return Err(self.err(format!("unknown compression method {}", b[2])));
        }
        let flags = b[3];
        if flags & 0xe0 != 0 {
            return Err(self.err("reserved header flags set"));
        }
        let mut pos = 10;
        if flags & 0x04 != 0 {
            if b.len() < pos + 2 {
                return Ok(None);
            }
            pos += 2 + usize::from(u16::from_le_bytes([b[pos], b[pos + 1]]));
        }
        for bit in [0x08, 0x10] {
            if flags & bit != 0 {
                match b.get(pos..).and_then(|r| r.iter().position(|&x| x == 0)) {
                    Some(n) => pos += n + 1,
                    None => return Ok(None),
                }
            }
        }
        if flags & 0x02 != 0 {
            pos += 2;
        }
        Ok(if b.len() >= pos { Some(pos) } else { None })
    }
}

impl Decompressor for Gzip {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), DecompressError> {
        match self.state {
            GzState::Header => {
                // Copy one byte at a time until the header is complete: headers are tiny.
                let mut used = 0;
                while used < input.len() {
                    self.buf.push(input[used]);
                    used += 1;
                    if let Some(len) = self.header_len()? {
                        debug_assert_eq!(len, self.buf.len());
                        self.offset += len as u64;
                        self.buf.clear();
                        self.state = GzState::Body;
                        break;
                    }
                    if self.buf.len() > MAX_GZIP_HEADER {
                        return Err(self.err("gzip header longer than 64 KiB"));
                    }
                }
                Ok((used, 0))
            }
            GzState::Body => {
                let (in0, out0) = (self.inflate.total_in(), self.inflate.total_out());
                let status = self
                    .inflate
                    .decompress(input, out, FlushDecompress::None)
                    .map_err(|e| self.err(format!("deflate: {e}")))?;
                let used = (self.inflate.total_in() - in0) as usize;
                let made = (self.inflate.total_out() - out0) as usize;
                self.crc.update(&out[..made]);
                self.offset += used as u64;
                if status == Status::StreamEnd {
                    self.state = GzState::Trailer;
                } else if used == 0 && made == 0 && !input.is_empty() && !out.is_empty() {
                    return Err(self.err("deflate stream makes no progress"));
                }
                Ok((used, made))
            }
            GzState::Trailer => {
                let n = (8 - self.buf.len()).min(input.len());
                self.buf.extend_from_slice(&input[..n]);
                if self.buf.len() == 8 {
                    let crc = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    let size = u32::from_le_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    if crc != self.crc.sum() {
                        return Err(self.err(format!(
                            "CRC-32 mismatch: trailer {crc:08x}, data {:08x}",
                            self.crc.sum()
                        )));
                    }
                    if size != self.crc.amount() {
                        return Err(
                            self.err(format!("size mismatch: trailer {size}, data {}", self.crc.amount()))
                        );
                    }
                    self.offset += 8;
                    self.buf.clear();
                    self.crc.reset();
                    self.inflate.reset(false);
                    self.members += 1;
                    self.state = GzState::Header;
                }
                Ok((n, 0))
            }
        }
    }

    fn finish(&mut self) -> Result<(), DecompressError> {
        match self.state {
            GzState::Header if self.buf.is_empty() && self.members > 0 => Ok(()),
            GzState::Header if self.buf.is_empty() => Err(self.err("empty stream: no gzip member")),
            _ => Err(self.err("truncated gzip member")),
        }
    }
}

// ===== LZ4 frame format (lz4/doc/lz4_Frame_format.md) =====

const LZ4_MAGIC: u32 = 0x184D_2204;
const WINDOW: usize = 64 * 1024;

#[derive(Debug)]
enum Lz4State {
    /// Collecting the magic number and frame descriptor.
    Header,
    /// Collecting the remaining bytes of a skippable frame.
    Skip(u64),
    /// Collecting a block size (4 bytes) then the block (and its checksum).
    Block,
    /// Collecting the content checksum (4 bytes).
    ContentChecksum,
    /// Output of a decoded block waiting to be copied out: `[pos..len]` of `out`.
    Drain(usize, usize),
}

#[derive(Debug, Default, Clone, Copy)]
struct Lz4Frame {
    independent: bool,
    block_checksum: bool,
    content_checksum: bool,
    max_block: usize,
}

/// LZ4 frames: the framing is parsed here and each block decoded with lz4_flex's block
/// decoder, with the previous 64 KiB as dictionary for linked blocks.
#[derive(Debug)]
pub(crate) struct Lz4 {
    state: Lz4State,
    buf: Vec<u8>,
    frame: Lz4Frame,
    window: Vec<u8>,
    out: Vec<u8>,
    hash: twox_hash::XxHash32,
    frames: u64,
    offset: u64,
}

impl Lz4 {
    pub(crate) fn new() -> Self {
        Self {
            state: Lz4State::Header,
            buf: Vec::new(),
            frame: Lz4Frame::default(),
            window: Vec::new(),
            out: Vec::new(),
            hash: twox_hash::XxHash32::with_seed(0),
            frames: 0,
            offset: 0,
        }
    }

    fn err(&self, message: impl Into<String>) -> DecompressError {
        DecompressError { format: "lz4", offset: self.offset, message: message.into() }
    }

    /// Appends input to `buf` until it holds `want` bytes; returns bytes consumed.
    fn gather(&mut self, input: &[u8], want: usize) -> usize {
        let n = want.saturating_sub(self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        n
    }

    /// Header bytes needed so far (`None` = complete and parsed into `frame`).
    fn parse_header(&mut self) -> Result<Option<usize>, DecompressError> {
        let b = &self.buf;
        if b.len() < 4 {
            return Ok(Some(4));
        }
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if (0x184D_2A50..=0x184D_2A5F).contains(&magic) {
            if b.len() < 8 {
                return Ok(Some(8));
            }
            let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            self.offset += 8;
            self.buf.clear();
            self.state = Lz4State::Skip(u64::from(len));
            return Ok(None);
        }
        if magic != LZ4_MAGIC {
            return Err(self.err(format!("not an LZ4 frame (magic {magic:08x})")));
        }
        if b.len() < 6 {
            return Ok(Some(6));
        }
        let (flg, bd) = (b[4], b[5]);
        if flg >> 6 != 1 {
            return Err(self.err(format!("unsupported frame version {}", flg >> 6)));
        }
        if flg & 0x02 != 0 || bd & 0x8f != 0 {
            return Err(self.err("reserved descriptor bits set"));
        }
        if flg & 0x01 != 0 {
            return Err(self.err("frame needs a dictionary"));
        }
        let max_block = match (bd >> 4) & 7 {
            4 => 64 << 10,
            5 => 256 << 10,
            6 => 1 << 20,
            7 => 4 << 20,
            n => return Err(self.err(format!("invalid block maximum size code {n}"))),
        };
        let len = 4 + 2 + if flg & 0x08 != 0 { 8 } else { 0 } + 1;
        if b.len() < len {
            return Ok(Some(len));
        }
        let hc = (twox_hash::XxHash32::oneshot(0, &b[4..len - 1]) >> 8) as u8;
        if hc != b[len - 1] {
            return Err(self.err("frame descriptor checksum mismatch"));
        }
        self.frame = Lz4Frame {
            independent: flg & 0x20 != 0,
            block_checksum: flg & 0x10 != 0,
            content_checksum: flg & 0x04 != 0,
            max_block,
        };
        self.offset += len as u64;
        self.buf.clear();
        self.window.clear();
        self.hash = twox_hash::XxHash32::with_seed(0);
        self.state = Lz4State::Block;
        Ok(None)
    }
}

impl Decompressor for Lz4 {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), DecompressError> {
        let mut used = 0;
        loop {
            match self.state {
                Lz4State::Drain(pos, len) => {
                    let n = (len - pos).min(out.len());
                    out[..n].copy_from_slice(&self.out[pos..pos + n]);
                    self.state = if pos + n == len { Lz4State::Block } else { Lz4State::Drain(pos + n, len) };
                    return Ok((used, n));
                }
                Lz4State::Header => loop {
                    match self.parse_header()? {
                        None => break,
                        Some(want) => {
                            if used == input.len() {
                                return Ok((used, 0));
                            }
                            used += self.gather(&input[used..], want);
                        }
                    }
                },
                Lz4State::Skip(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - used);
                    used += n;
                    self.offset += n as u64;
                    let left = left - n as u64;
                    if left > 0 {
                        self.state = Lz4State::Skip(left);
                        return Ok((used, 0));
                    }
                    self.frames += 1;
                    self.state = Lz4State::Header;
                }
                Lz4State::ContentChecksum => {
                    used += self.gather(&input[used..], 4);
                    if self.buf.len() < 4 {
                        return Ok((used, 0));
                    }
                    let stored = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    let computed = self.hash.finish_32();
                    if stored != computed {
                        return Err(self.err(format!(
                            "content checksum mismatch: stored {stored:08x}, computed {computed:08x}"
                        )));
                    }
                    self.offset += 4;
                    self.buf.clear();
                    self.frames += 1;
                    self.state = Lz4State::Header;
                }
                Lz4State::Block => {
                    used += self.gather(&input[used..], 4);
                    if self.buf.len() < 4 {
                        return Ok((used, 0));
                    }
                    let word = u32::from_le_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    if word == 0 {
                        self.offset += 4;
                        self.buf.clear();
                        if self.frame.content_checksum {
                            self.state = Lz4State::ContentChecksum;
                        } else {
                            self.frames += 1;
                            self.state = Lz4State::Header;
                        }
                        continue;
                    }
                    let raw = word & 0x8000_0000 != 0;
                    let size = (word & 0x7fff_ffff) as usize;
                    if size > self.frame.max_block {
                        return Err(self.err(format!(
                            "block of {size} bytes exceeds the frame's maximum {}",
                            self.frame.max_block
                        )));
                    }
                    let total = 4 + size + if self.frame.block_checksum { 4 } else { 0 };
                    used += self.gather(&input[used..], total);
                    if self.buf.len() < total {
                        return Ok((used, 0));
                    }
                    let data = &self.buf[4..4 + size];
                    if self.frame.block_checksum {
                        let stored =
                            u32::from_le_bytes(self.buf[4 + size..total].try_into().unwrap_or([0; 4]));
                        if twox_hash::XxHash32::oneshot(0, data) != stored {
                            return Err(self.err("block checksum mismatch"));
                        }
                    }
                    // Output room bounded by what this block can produce, not by the frame's
                    // declared maximum: LZ4 expands at most 255:1 (a match-length byte of 255
                    // adds 255 bytes), and a raw block is its own size.
                    let room = if raw { size } else { size.saturating_mul(255).min(self.frame.max_block) };
                    if self.out.len() < room {
                        self.out.resize(room, 0);
                    }
                    let len = if raw {
                        self.out[..size].copy_from_slice(data);
                        size
                    } else if self.frame.independent {
                        lz4_flex::block::decompress_into(data, &mut self.out[..room])
                            .map_err(|e| self.err(format!("bad block: {e}")))?
                    } else {
                        lz4_flex::block::decompress_into_with_dict(data, &mut self.out[..room], &self.window)
                            .map_err(|e| self.err(format!("bad block: {e}")))?
                    };
                    if self.frame.content_checksum {
                        std::hash::Hasher::write(&mut self.hash, &self.out[..len]);
                    }
                    if !self.frame.independent {
                        // Keep the last 64 KiB of output as the next block's dictionary.
                        if len >= WINDOW {
                            self.window.clear();
                            self.window.extend_from_slice(&self.out[len - WINDOW..len]);
                        } else {
                            let excess = (self.window.len() + len).saturating_sub(WINDOW);
                            self.window.drain(..excess);
                            self.window.extend_from_slice(&self.out[..len]);
                        }
                    }
                    self.offset += total as u64;
                    self.buf.clear();
                    self.state = Lz4State::Drain(0, len);
                }
            }
        }
    }

    fn finish(&mut self) -> Result<(), DecompressError> {
        match self.state {
            Lz4State::Header if self.buf.is_empty() && self.frames > 0 => Ok(()),
            Lz4State::Header if self.buf.is_empty() => Err(self.err("empty stream: no LZ4 frame")),
            _ => Err(self.err("truncated LZ4 frame")),
        }
    }
}

// ===== zstd (RFC 8878) =====

const ZSTD_MAGIC: u32 = 0xFD2F_B528;

#[derive(Debug)]
enum ZstdState {
    /// Collecting a frame header (or a skippable frame's header).
    Header,
    /// Skipping a skippable frame.
    Skip(u64),
    /// Collecting one whole block (3-byte header + content).
    Block,
    /// Draining decoded output.
    Drain { last: bool },
}

/// zstd frames: frame and block boundaries are found here so that ruzstd's
/// `decode_from_to` is always given exactly one whole block (at most 128 KiB of output each;
/// the last block together with the 4-byte content checksum).
pub(crate) struct Zstd {
    state: ZstdState,
    buf: Vec<u8>,
    dec: ruzstd::decoding::FrameDecoder,
    has_checksum: bool,
    frames: u64,
    offset: u64,
}

impl fmt::Debug for Zstd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Zstd").field("state", &self.state).field("offset", &self.offset).finish()
    }
}

impl Zstd {
    pub(crate) fn new() -> Self {
        let mut dec = ruzstd::decoding::FrameDecoder::new();
        dec.set_max_window_size(MAX_ZSTD_WINDOW);
        Self { state: ZstdState::Header, buf: Vec::new(), dec, has_checksum: false, frames: 0, offset: 0 }
    }

    fn err(&self, message: impl Into<String>) -> DecompressError {
        DecompressError { format: "zstd", offset: self.offset, message: message.into() }
    }

    fn gather(&mut self, input: &[u8], want: usize) -> usize {
        let n = want.saturating_sub(self.buf.len()).min(input.len());
        self.buf.extend_from_slice(&input[..n]);
        n
    }

    /// Bytes of frame header needed (`None` once handled).
    fn header(&mut self) -> Result<Option<usize>, DecompressError> {
        let b = &self.buf;
        if b.len() < 5 {
            return Ok(Some(5));
        }
        let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        if magic & 0xFFFF_FFF0 == 0x184D_2A50 {
            if b.len() < 8 {
                return Ok(Some(8));
            }
            let len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            self.offset += 8;
            self.buf.clear();
            self.state = ZstdState::Skip(u64::from(len));
            return Ok(None);
        }
        if magic != ZSTD_MAGIC {
            return Err(self.err(format!("not a zstd frame (magic {magic:08x})")));
        }
        let fhd = b[4];
        let single_segment = fhd & 0x20 != 0;
        let fcs_len = match fhd >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let did_len = [0, 1, 2, 4][usize::from(fhd & 3)];
        let len = 5 + usize::from(!single_segment) + did_len + fcs_len;
        if b.len() < len {
            return Ok(Some(len));
        }
        self.has_checksum = fhd & 0x04 != 0;
        let mut src = &self.buf[..];
        self.dec.reset(&mut src).map_err(|e| self.err(format!("bad frame header: {e}")))?;
        self.offset += len as u64;
        self.buf.clear();
        self.state = ZstdState::Block;
        Ok(None)
    }

    fn drain(&mut self, out: &mut [u8], last: bool) -> Result<usize, DecompressError> {
        let (_, made) = self.dec.decode_from_to(&[], out).map_err(|e| self.err(format!("decoding: {e}")))?;
        if made == 0 {
            self.state = if last {
                // The calculated checksum (low 32 bits of XXH64) is complete once all output is
                // drained.
                if self.has_checksum {
                    let stored = self.dec.get_checksum_from_data();
                    let computed = self.dec.get_calculated_checksum();
                    if stored.is_none() || stored != computed {
                        return Err(self.err(format!(
                            "content checksum mismatch: stored {stored:08x?}, computed {computed:08x?}"
                        )));
                    }
                }
                self.end_frame()
            } else {
                ZstdState::Block
            };
        }
        Ok(made)
    }

    fn end_frame(&mut self) -> ZstdState {
        self.frames += 1;
        ZstdState::Header
    }
}

impl Decompressor for Zstd {
    fn step(&mut self, input: &[u8], out: &mut [u8]) -> Result<(usize, usize), DecompressError> {
        let mut used = 0;
        loop {
            match self.state {
                ZstdState::Drain { last } => {
                    let made = self.drain(out, last)?;
                    if made > 0 || out.is_empty() {
                        return Ok((used, made));
                    }
                }
                ZstdState::Header => loop {
                    match self.header()? {
                        None => break,
                        Some(want) => {
                            if used == input.len() {
                                return Ok((used, 0));
                            }
                            used += self.gather(&input[used..], want);
                        }
                    }
                },
                ZstdState::Skip(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(input.len() - used);
                    used += n;
                    self.offset += n as u64;
                    if left > n as u64 {
                        self.state = ZstdState::Skip(left - n as u64);
                        return Ok((used, 0));
                    }
                    self.state = self.end_frame();
                }
                ZstdState::Block => {
                    used += self.gather(&input[used..], 3);
                    if self.buf.len() < 3 {
                        return Ok((used, 0));
                    }
                    let h =
                        u32::from(self.buf[0]) | u32::from(self.buf[1]) << 8 | u32::from(self.buf[2]) << 16;
                    let last = h & 1 != 0;
                    let btype = (h >> 1) & 3;
                    let size = (h >> 3) as usize;
                    let content = match btype {
                        0 | 2 => size,
                        1 => 1,
                        _ => return Err(self.err("reserved block type")),
                    };
                    if size > 128 * 1024 {
                        return Err(self.err(format!("block of {size} bytes exceeds 128 KiB")));
                    }
                    // The last block goes in with the content checksum: ruzstd reads it there.
                    let total = 3 + content + if last && self.has_checksum { 4 } else { 0 };
                    used += self.gather(&input[used..], total);
                    if self.buf.len() < total {
                        return Ok((used, 0));
                    }
                    let (read, made) = self
                        .dec
                        .decode_from_to(&self.buf, out)
                        .map_err(|e| self.err(format!("decoding block: {e}")))?;
                    if read != total {
                        return Err(self.err(format!("block decoder read {read} of {total} bytes")));
                    }
                    self.offset += total as u64;
                    self.buf.clear();
                    self.state = ZstdState::Drain { last };
                    if made > 0 {
                        return Ok((used, made));
                    }
                }
            }
        }
    }

    fn finish(&mut self) -> Result<(), DecompressError> {
        match self.state {
            ZstdState::Header if self.buf.is_empty() && self.frames > 0 => Ok(()),
            ZstdState::Header if self.buf.is_empty() => Err(self.err("empty stream: no zstd frame")),
            _ => Err(self.err("truncated zstd frame")),
        }
    }
}
