//! Verifying PostgreSQL WAL (12–18), sans-IO: segment bytes in, verified records out.
//!
//! [`WalReader`] reads one timeline's WAL from a start LSN to an end LSN, the way `pg_waldump
//! --start --end` does for `pg_verifybackup`: the long header of each segment (magic of the
//! major version, page address, system identifier, segment size, WAL block size), every page
//! header from the start on (magic, info bits, page address, timeline order), the continuation
//! of records across pages and segments, each record's length and prev-link, and the CRC-32C of
//! every record. Errors say what and where: segment file name, offset, LSN.
//!
//! The reader takes the bytes of each segment file in any split; it never reads a file. [`dir`]
//! drives it over a backup's `pg_wal/` directory (the only IO of the crate, kept apart).
//!
//! References (read, not copied): `src/include/access/xlog_internal.h` (page headers, segment
//! names), `src/include/access/xlogrecord.h` (the record header and its CRC),
//! `src/backend/access/transam/xlogreader.c` (what is checked and in which order),
//! `src/bin/pg_waldump/pg_waldump.c` (how `--end` stops the read).
//!
//! ```
//! use pg_wal::{WalParams, WalReader, fuzzing::WalBuilder};
//! use pg_wire::replication::Lsn;
//!
//! // A segment with two records, built in memory.
//! let mut wal = WalBuilder::new(16, 1 << 20, 8192, 0x28);
//! wal.record(1, 0, b"hello");
//! let end = wal.record(1, 0, &[7; 9000]).1;
//! let params = WalParams { timeline: 1, start: Lsn(0x28), segment_size: 1 << 20, system_identifier: None, major: Some(16) };
//! let mut reader = WalReader::new(params).unwrap().with_end(Lsn(end)).unwrap();
//! assert!(reader.begin_segment(0).unwrap());
//! reader.feed(wal.segment(0).unwrap()).unwrap();
//! reader.end_segment().unwrap();
//! assert_eq!(reader.finish(Lsn(end)).unwrap().records, 2);
//! ```

pub mod dir;
mod error;
pub mod format;
mod reader;

pub use error::{WalError, WalErrorKind};
pub use reader::{WalParams, WalReader, WalSummary};

#[doc(hidden)]
pub mod fuzzing {
    //! A WAL writer for tests, and the entry point of the `wal` fuzz target (also replayed by
    //! the crate's tests).

    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use pg_wire::replication::Lsn;

    use crate::format::{
        LONG_HEADER, RECORD_CRC_OFFSET, RECORD_HEADER, SHORT_HEADER, XLP_FIRST_IS_CONTRECORD,
        XLP_LONG_HEADER, maxalign, page_magic,
    };
    use crate::{WalParams, WalReader, WalSummary};

    /// Writes WAL the way a server lays it out (page headers, continuations, switches), for
    /// tests and the fuzzer. Timeline 1, system identifier 42.
    #[derive(Debug, Clone)]
    pub struct WalBuilder {
        magic: u16,
        segment_size: u32,
        block_size: u32,
        segments: BTreeMap<u64, Vec<u8>>,
        pos: u64,
        prev: u64,
    }

    impl WalBuilder {
        /// The first record goes at `start` (8-aligned, not inside a page header).
        pub fn new(major: u32, segment_size: u32, block_size: u32, start: u64) -> WalBuilder {
            let mut b = WalBuilder {
                magic: page_magic(major).expect("a known major"),
                segment_size,
                block_size,
                segments: BTreeMap::new(),
                pos: start,
                prev: start.saturating_sub(64),
            };
            let block = u64::from(block_size);
            if !start.is_multiple_of(block) {
                b.page_header(start - start % block, 0);
            }
            b
        }

        fn segment_mut(&mut self, segno: u64) -> &mut Vec<u8> {
            let (magic, seg, block) = (self.magic, self.segment_size, self.block_size);
            self.segments.entry(segno).or_insert_with(|| {
                let mut s = zeroed(seg as usize);
                write_header(
                    &mut s[..LONG_HEADER],
                    magic,
                    XLP_LONG_HEADER,
                    segno * u64::from(seg),
                    0,
                    seg,
                    block,
                );
                s
            })
        }

        fn put(&mut self, at: u64, bytes: &[u8]) {
            let seg = u64::from(self.segment_size);
            let off = (at % seg) as usize;
            self.segment_mut(at / seg)[off..off + bytes.len()].copy_from_slice(bytes);
        }

        /// Writes the header of the page at `p`; returns its size.
        fn page_header(&mut self, p: u64, rem_len: u32) -> u64 {
            let seg = u64::from(self.segment_size);
            let long = p.is_multiple_of(seg);
            let mut info = if rem_len > 0 { XLP_FIRST_IS_CONTRECORD } else { 0 };
            if long {
                info |= XLP_LONG_HEADER;
            }
            let size = if long { LONG_HEADER } else { SHORT_HEADER };
            let mut h = [0u8; LONG_HEADER];
            write_header(&mut h, self.magic, info, p, rem_len, self.segment_size, self.block_size);
            self.put(p, &h[..size]);
            size as u64
        }

        /// Appends a record; returns its start and end.
        pub fn record(&mut self, rmid: u8, info: u8, payload: &[u8]) -> (u64, u64) {
            let block = u64::from(self.block_size);
            if self.pos.is_multiple_of(block) {
                self.pos += self.page_header(self.pos, 0);
            }
            let mut bytes = vec![0u8; RECORD_HEADER];
            bytes.extend_from_slice(payload);
            let tot_len = bytes.len() as u32;
            bytes[0..4].copy_from_slice(&tot_len.to_le_bytes());
            bytes[4..8].copy_from_slice(&1000u32.to_le_bytes());
            bytes[8..16].copy_from_slice(&self.prev.to_le_bytes());
            bytes[16] = info;
            bytes[17] = rmid;
            let crc = crc32c::crc32c_append(crc32c::crc32c(payload), &bytes[..RECORD_CRC_OFFSET]);
            bytes[RECORD_CRC_OFFSET..RECORD_HEADER].copy_from_slice(&crc.to_le_bytes());
            let start = self.pos;
            let mut i = 0;
            while i < bytes.len() {
                if self.pos.is_multiple_of(block) {
                    self.pos += self.page_header(self.pos, (bytes.len() - i) as u32);
                }
                let n = ((block - self.pos % block) as usize).min(bytes.len() - i);
                self.put(self.pos, &bytes[i..i + n]);
                self.pos += n as u64;
                i += n;
            }
            let end = self.pos;
            self.prev = start;
            self.pos = maxalign(self.pos);
            (start, end)
        }

        /// Appends an `XLOG_SWITCH` record: the next record starts the next segment.
        pub fn switch(&mut self) -> (u64, u64) {
            let r = self.record(0, 0x40, &[]);
            let seg = u64::from(self.segment_size);
            self.pos = self.pos.div_ceil(seg) * seg;
            r
        }

        /// Where the next record goes.
        pub fn position(&self) -> u64 {
            self.pos
        }

        /// The bytes of segment `segno`, if anything was written to it.
        pub fn segment(&self, segno: u64) -> Option<&[u8]> {
            self.segments.get(&segno).map(|s| &s[..])
        }

        /// Mutable bytes of segment `segno`.
        pub fn segment_bytes_mut(&mut self, segno: u64) -> Option<&mut Vec<u8>> {
            self.segments.get_mut(&segno)
        }

        /// The segment numbers written, in order.
        pub fn segment_numbers(&self) -> Vec<u64> {
            self.segments.keys().copied().collect()
        }
    }

    impl Drop for WalBuilder {
        fn drop(&mut self) {
            for (_, s) in std::mem::take(&mut self.segments) {
                recycle(s);
            }
        }
    }

    thread_local! {
        /// Segment buffers of dropped builders, for the next one. The `wal` fuzz target builds
        /// one to three 1 MiB segments per input; under AddressSanitizer each fresh 1 MiB
        /// allocation is an mmap, 256 page faults, a memset and a munmap: a third of the
        /// target's time before they were reused.
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer, with the capacity of a recycled one if there is one.
    fn spare() -> Vec<u8> {
        let mut v = SPARE.with_borrow_mut(Vec::pop).unwrap_or_default();
        v.clear();
        v
    }

    /// `len` zero bytes, in a recycled buffer if there is one.
    fn zeroed(len: usize) -> Vec<u8> {
        let mut v = spare();
        v.resize(len, 0);
        v
    }

    /// Keeps `v` (up to four buffers) for [`spare`].
    fn recycle(v: Vec<u8>) {
        SPARE.with_borrow_mut(|s| {
            if s.len() < 4 {
                s.push(v);
            }
        });
    }

    fn write_header(h: &mut [u8], magic: u16, info: u16, addr: u64, rem_len: u32, seg: u32, block: u32) {
        h[0..2].copy_from_slice(&magic.to_le_bytes());
        h[2..4].copy_from_slice(&info.to_le_bytes());
        h[4..8].copy_from_slice(&1u32.to_le_bytes());
        h[8..16].copy_from_slice(&addr.to_le_bytes());
        h[16..20].copy_from_slice(&rem_len.to_le_bytes());
        if info & XLP_LONG_HEADER != 0 {
            h[24..32].copy_from_slice(&42u64.to_le_bytes());
            h[32..36].copy_from_slice(&seg.to_le_bytes());
            h[36..40].copy_from_slice(&block.to_le_bytes());
        }
    }

    /// Feeds `segments` (in order) to a reader of `params` in pieces of `split` bytes (at least
    /// 1); the end is given up front when `known_end`, else only to `finish`.
    pub fn read(
        params: &WalParams,
        end: u64,
        known_end: bool,
        segments: &[(u64, &[u8])],
        split: usize,
    ) -> Result<WalSummary, crate::WalError> {
        read_focused(params, end, known_end, segments, split, std::slice::from_ref(&(0..u64::MAX)))
    }

    /// [`read`], with pieces of `split` bytes only for the WAL positions in `focus` (sorted,
    /// disjoint ranges); the bytes outside (a segment's pages before the start, the zeros after
    /// a switch or the end) go in pieces of 64 KiB. The fuzz target's split-equivalence check is
    /// about the records: feeding whole 1 MiB segments in 61-byte pieces four times made it 34
    /// inputs a second.
    pub fn read_focused(
        params: &WalParams,
        end: u64,
        known_end: bool,
        segments: &[(u64, &[u8])],
        split: usize,
        focus: &[std::ops::Range<u64>],
    ) -> Result<WalSummary, crate::WalError> {
        const COARSE: u64 = 64 * 1024;
        let mut reader = WalReader::new(params.clone())?;
        if known_end {
            reader = reader.with_end(Lsn(end))?;
        }
        let seg = u64::from(params.segment_size);
        for (segno, bytes) in segments {
            if !reader.begin_segment(*segno)? {
                continue;
            }
            let mut off = 0usize;
            while off < bytes.len() {
                let pos = segno.saturating_mul(seg).saturating_add(off as u64);
                let left = (bytes.len() - off) as u64;
                // The first range that ends after `pos`: it holds `pos`, or starts after it.
                let n = match focus.get(focus.partition_point(|r| r.end <= pos)) {
                    Some(r) if r.start <= pos => (split.max(1) as u64).min(r.end - pos),
                    Some(r) => COARSE.min(r.start - pos),
                    None => COARSE,
                };
                let n = n.min(left) as usize;
                reader.feed(&bytes[off..off + n])?;
                off += n;
                if reader.is_done() {
                    break;
                }
            }
            reader.end_segment()?;
        }
        reader.finish(Lsn(end))
    }

    /// The `wal` fuzz target. `data[0]` odd: `data[1..]` is the raw first segment of a 1 MiB
    /// WAL (must not panic). Even: a valid WAL is built from `data[1..]` (record sizes, a
    /// switch, where it starts), must verify, is then damaged by the rest of the input, and
    /// must give the same verdict whether the end is known in advance or not.
    pub fn reader(data: &[u8]) {
        const SEG: u32 = 1 << 20;
        let Some((&mode, rest)) = data.split_first() else { return };
        if mode & 1 == 1 {
            let mut segment = spare();
            segment.extend_from_slice(rest);
            let start = rest.get(..2).map_or(0x28, |b| u64::from(u16::from_le_bytes([b[0], b[1]])) * 8);
            let params = WalParams {
                timeline: 1,
                start: Lsn(start),
                segment_size: SEG,
                system_identifier: None,
                major: None,
            };
            let split = usize::from(mode >> 1) + 1;
            for known in [true, false] {
                let r = read(&params, start + rest.len() as u64, known, &[(0, &segment)], split);
                let _ = std::hint::black_box(r.map_err(|e| e.to_string()));
            }
            segment.resize(SEG as usize, 0);
            let r = read(&params, u64::from(SEG), true, &[(0, &segment)], 4096);
            let _ = std::hint::black_box(r.map_err(|e| e.to_string()));
            recycle(segment);
            return;
        }
        // A valid WAL from the input's first bytes.
        let (shape, damage) = rest.split_at(rest.len().min(24));
        let block = if mode & 2 == 0 { 1024 } else { 8192 };
        let back = u64::from(shape.first().copied().unwrap_or(3) % 8) * 8 + 24;
        let start = u64::from(SEG) - 3 * u64::from(block) + back;
        let mut wal = WalBuilder::new(16, SEG, block, start);
        let mut records = 0;
        let mut end = start;
        // The pages of the records, and the page after each: fed in small pieces.
        let block64 = u64::from(block);
        let mut focus: Vec<std::ops::Range<u64>> = Vec::new();
        let mut switches = 0;
        for &b in shape.iter().skip(1) {
            // At most two switches: each one is a new 1 MiB segment to build and read.
            let (s, e) = if b == 0xFF && switches < 2 {
                switches += 1;
                wal.switch()
            } else {
                let len = usize::from(b) * 37 % 3000;
                wal.record(10, b & 0xF0, &vec![b; len])
            };
            end = e;
            records += 1;
            let range = s - s % block64..(e - e % block64).saturating_add(2 * block64);
            match focus.last_mut() {
                Some(last) if last.end >= range.start => last.end = last.end.max(range.end),
                _ => focus.push(range),
            }
        }
        if records == 0 {
            return;
        }
        let params = WalParams {
            timeline: 1,
            start: Lsn(start),
            segment_size: SEG,
            system_identifier: Some(42),
            major: Some(16),
        };
        fn view(wal: &WalBuilder) -> Vec<(u64, &[u8])> {
            wal.segment_numbers().into_iter().map(|n| (n, wal.segment(n).expect("listed"))).collect()
        }
        let segs = view(&wal);
        // Pieces of 61 to 3904 bytes (not 1: the unit tests feed byte by byte) over the records
        // and the page after them; 64 KiB pieces before and after.
        let split = (usize::from(mode >> 2) + 1) * 61;
        for known in [true, false] {
            let summary =
                read_focused(&params, end, known, &segs, split, &focus).expect("a valid WAL verifies");
            assert_eq!(summary.records, records, "every record read");
            assert_eq!(summary.last_record_end, Lsn(end));
        }
        // Damage, in place: (position from the start, xor) pairs, over the bytes from the start
        // page on.
        let span = end - (start - start % u64::from(block));
        for pair in damage.chunks(3) {
            let [a, b, x] = [pair[0], *pair.get(1).unwrap_or(&0), *pair.get(2).unwrap_or(&1)];
            let at = start - start % u64::from(block) + u64::from(u16::from_le_bytes([a, b])) % span.max(1);
            let (segno, off) = (at / u64::from(SEG), (at % u64::from(SEG)) as usize);
            if let Some(s) = wal.segment_bytes_mut(segno) {
                s[off] ^= x.max(1);
            }
        }
        let borrowed = view(&wal);
        let known = read_focused(&params, end, true, &borrowed, split, &focus);
        let deferred = read_focused(&params, end, false, &borrowed, split.saturating_mul(3), &focus);
        assert_eq!(known.is_ok(), deferred.is_ok(), "same verdict: {known:?} / {deferred:?}");
        if let (Err(a), Err(b)) = (&known, &deferred) {
            std::hint::black_box((a.to_string(), b.to_string()));
        }
    }
}

#[cfg(test)]
mod tests;
