//! The WAL reader: segment bytes in, verified records counted, the first problem out.

use pg_wire::replication::Lsn;

use crate::error::{WalError, WalErrorKind};
use crate::format::{
    LONG_HEADER, MAX_RECORD_LEN, PageHeader, RECORD_CRC_OFFSET, RECORD_HEADER, RM_XLOG_ID, XLOG_SWITCH,
    XLP_ALL_FLAGS, XLP_FIRST_IS_CONTRECORD, XLP_FIRST_IS_OVERWRITE_CONTRECORD, major_of_magic, maxalign,
    page_magic, segment_name, u32_at, u64_at, valid_block_size,
};

/// What the reader checks the WAL against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalParams {
    /// The timeline whose segment files are read (`WAL-Ranges[].Timeline`).
    pub timeline: u32,
    /// The first record to verify (`Start-LSN`): a record start, or the start of a page (then
    /// the first record after any continuation, like `pg_waldump --start`).
    pub start: Lsn,
    /// `wal_segment_size` in bytes: a power of two between 1 MiB and 1 GiB.
    pub segment_size: u32,
    /// The cluster's system identifier, if known: every long page header must carry it (else
    /// the first segment's is taken).
    pub system_identifier: Option<u64>,
    /// The server's major version, if known: every page must carry its magic (else the first
    /// page's magic, which must be one of 12–18, is required of all).
    pub major: Option<u32>,
}

/// What a successful read covered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalSummary {
    /// Records whose CRC was verified.
    pub records: u64,
    /// Their total length (`xl_tot_len`).
    pub record_bytes: u64,
    /// Page headers checked.
    pub pages: u64,
    /// Segments fed.
    pub segments: u64,
    /// `XLOG_SWITCH` records met (the rest of their segment is not read).
    pub switches: u64,
    /// The end of the last verified record.
    pub last_record_end: Lsn,
    /// The page magic's major version.
    pub major: Option<u32>,
    /// The system identifier of the long headers.
    pub system_identifier: Option<u64>,
}

/// A record being assembled: only its header is kept; its body goes through the CRC.
#[derive(Debug, Clone)]
struct Rec {
    start: u64,
    tot_len: u32,
    got: u32,
    header: [u8; RECORD_HEADER],
    crc: u32,
}

#[derive(Debug, Clone)]
enum State {
    /// Between records: `cursor` is where the next one starts.
    Idle,
    /// Inside a record: `cursor` is the position of its next byte.
    Record(Rec),
    /// Skipping the tail of a record begun before `start` (which was a page boundary).
    Skip,
}

/// A sans-IO WAL verifier for one timeline's LSN range.
///
/// Feed it the segment files the range needs, in order, each from its first byte:
/// [`next_segment`](Self::next_segment) says which, [`begin_segment`](Self::begin_segment),
/// [`feed`](Self::feed) (any split), [`end_segment`](Self::end_segment); then
/// [`finish`](Self::finish) with the range's end.
///
/// Like `pg_waldump --start --end` (what `pg_verifybackup` runs): it checks the long header of
/// every segment (magic, page address, system identifier, segment size, block size), the header
/// of every page from the start on (magic, info bits, page address, timeline order), the
/// continuation of records across pages and segments (`XLP_FIRST_IS_CONTRECORD`,
/// `xlp_rem_len`), each record's length and prev-link, and the CRC-32C of every record that ends
/// by the end of the range; a record that runs past the end is not read. An `XLOG_SWITCH`
/// record ends its segment.
///
/// When the end is known in advance ([`with_end`](Self::with_end)), `feed` fails at once and
/// the reader stops wanting bytes when it is reached. Without it (WAL read while a backup is
/// still streaming), the first problem is kept with its position and `finish` reports it only
/// if it lies before the end it is given: bytes after the end may be a recycled segment's.
///
/// Memory: one WAL page (at most 64 kB) and one record header; nothing is allocated by a length
/// read from the input.
#[derive(Debug, Clone)]
pub struct WalReader {
    params: WalParams,
    end: Option<u64>,
    magic: Option<u16>,
    system_identifier: Option<u64>,
    block_size: Option<u32>,
    /// The segment being fed and how many of its bytes have been.
    segment: Option<u64>,
    fed: u64,
    /// The bytes of the current page (only for pages that are checked).
    page: Vec<u8>,
    state: State,
    cursor: u64,
    /// The start of the last record read (`None`: the next is read "at random").
    prev: Option<u64>,
    last_tli: u32,
    done: bool,
    /// The first problem and the position of the last byte needed to see it.
    failed: Option<(WalError, u64)>,
    summary: WalSummary,
}

impl WalReader {
    /// A reader of the range starting at `params.start`.
    pub fn new(params: WalParams) -> Result<WalReader, WalError> {
        let mut reader = WalReader {
            end: None,
            magic: params.major.and_then(page_magic),
            system_identifier: params.system_identifier,
            block_size: None,
            segment: None,
            fed: 0,
            page: Vec::new(),
            state: State::Idle,
            cursor: params.start.0,
            prev: None,
            last_tli: 0,
            done: false,
            failed: None,
            summary: WalSummary::default(),
            params,
        };
        let p = &reader.params;
        if pg_wire::replication::check_segment_size(u64::from(p.segment_size)).is_err() {
            let e = format!("invalid WAL segment size {}", p.segment_size);
            return Err(reader.error(p.start.0, WalErrorKind::Usage(e)));
        }
        if let Some(major) = p.major
            && page_magic(major).is_none()
        {
            let e = format!("PostgreSQL {major} is not a major version this WAL reader knows (12 to 18)");
            return Err(reader.error(p.start.0, WalErrorKind::Usage(e)));
        }
        if p.timeline == 0 {
            return Err(reader.error(p.start.0, WalErrorKind::Usage("timeline 0".into())));
        }
        reader.summary.last_record_end = p.start;
        Ok(reader)
    }

    /// Stops at `end` (`End-LSN`): the reader wants no byte past it and `feed` fails at the
    /// first problem before it.
    pub fn with_end(mut self, end: Lsn) -> Result<WalReader, WalError> {
        if end.0 < self.params.start.0 {
            let e = format!("the range ends at {end}, before its start {}", self.params.start);
            return Err(self.error(end.0, WalErrorKind::Usage(e)));
        }
        self.end = Some(end.0);
        self.check_done();
        Ok(self)
    }

    /// The parameters.
    pub fn params(&self) -> &WalParams {
        &self.params
    }

    /// The segment number the reader needs next (the open one while one is being fed), or
    /// `None` once the known end is reached or a problem was found.
    pub fn next_segment(&self) -> Option<u64> {
        if self.done || self.failed.is_some() {
            return None;
        }
        Some(self.segment.unwrap_or(self.cursor / self.seg_size()))
    }

    /// The file name of segment `segno` on the range's timeline.
    pub fn segment_name(&self, segno: u64) -> String {
        segment_name(self.params.timeline, segno, self.params.segment_size)
    }

    /// True once the known end has been reached: nothing more is needed.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Starts segment `segno`. `Ok(false)`: the reader does not need it (a segment before the
    /// one it needs, or any once done or failed), skip it. A segment after the one it needs
    /// means that one is missing: an error.
    pub fn begin_segment(&mut self, segno: u64) -> Result<bool, WalError> {
        if self.segment.is_some() {
            self.end_segment()?;
        }
        let Some(wanted) = self.next_segment() else { return Ok(false) };
        if segno < wanted {
            return Ok(false);
        }
        if segno > wanted {
            let kind = WalErrorKind::UnexpectedSegment {
                fed: self.segment_name(segno),
                wanted: self.segment_name(wanted),
            };
            let at = self.cursor;
            return self.fail(at, at, kind).map(|_| false);
        }
        self.segment = Some(segno);
        self.fed = 0;
        self.page.clear();
        self.summary.segments += 1;
        Ok(true)
    }

    /// The next bytes of the open segment. With a known end, the first problem is returned;
    /// without, it is kept for [`finish`](Self::finish). Bytes after the end, after a problem,
    /// or of a segment not needed are ignored.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), WalError> {
        let Some(segno) = self.segment else {
            if self.done || self.failed.is_some() {
                return self.result();
            }
            let at = self.cursor;
            return self.fail(at, at, WalErrorKind::Usage("bytes fed before begin_segment".into()));
        };
        let seg_size = self.seg_size();
        let seg_start = segno * seg_size;
        while !bytes.is_empty() && !self.done && self.failed.is_none() {
            if self.fed >= seg_size {
                let at = seg_start + seg_size;
                return self.fail(at, at, WalErrorKind::SegmentTooLong(self.params.segment_size));
            }
            let block = u64::from(self.block_size.unwrap_or(LONG_HEADER as u32));
            let in_page = self.fed % block;
            let page_start = seg_start + self.fed - in_page;
            let want = (block - in_page).min(seg_size - self.fed) as usize;
            let mut take = want.min(bytes.len());
            if self.page_needed(page_start, seg_start) {
                self.page.extend_from_slice(&bytes[..take]);
            } else if self.block_size.is_some() {
                // Not needed, nor is any page before the one holding the cursor (the pages
                // before the start, the rest of a segment after a switch): skipped in one step,
                // not a page at a time.
                let needed_from = (self.cursor - self.cursor % block).min(seg_start + seg_size);
                let skip = needed_from.saturating_sub(seg_start + self.fed).max(want as u64);
                take = (skip.min(bytes.len() as u64)) as usize;
            }
            self.fed += take as u64;
            bytes = &bytes[take..];
            if self.block_size.is_none() && self.page.len() == LONG_HEADER {
                self.first_long_header(seg_start)?;
                continue;
            }
            if take == want && !self.page.is_empty() {
                let page = std::mem::take(&mut self.page);
                let r = self.process_page(page_start, &page);
                self.page = page;
                self.page.clear();
                r?;
            }
        }
        self.result()
    }

    /// The open segment has no more bytes. If the reader still needs some of it, that is a
    /// problem (reported now with a known end, kept otherwise).
    pub fn end_segment(&mut self) -> Result<(), WalError> {
        let Some(segno) = self.segment.take() else { return self.result() };
        let seg_size = self.seg_size();
        let seg_end = (segno + 1) * seg_size;
        self.page.clear();
        if !self.done && self.failed.is_none() && self.fed < seg_size && self.cursor < seg_end {
            let kind =
                WalErrorKind::SegmentTooShort { size: self.fed, segment_size: self.params.segment_size };
            let at = self.cursor;
            return self.fail(at, at, kind);
        }
        self.result()
    }

    /// The range ends at `end`: every record up to it must have been read and verified.
    pub fn finish(mut self, end: Lsn) -> Result<WalSummary, WalError> {
        if self.segment.is_some() {
            // A problem of an unfinished segment is judged against `end` like any other.
            let _ = self.end_segment();
        }
        if self.done {
            return Ok(self.summary);
        }
        let frontier = match &self.failed {
            Some((_, reach)) => *reach,
            None => self.cursor,
        };
        if frontier >= end.0 {
            return Ok(self.summary);
        }
        if let Some((e, _)) = self.failed {
            return Err(e);
        }
        Err(self.error(self.cursor, WalErrorKind::Incomplete { end }))
    }

    /// What has been verified so far.
    pub fn summary(&self) -> &WalSummary {
        &self.summary
    }

    // ===== internals =====

    fn seg_size(&self) -> u64 {
        u64::from(self.params.segment_size)
    }

    fn block_or_header(&self) -> u64 {
        u64::from(self.block_size.unwrap_or(LONG_HEADER as u32))
    }

    fn error(&self, at: u64, kind: WalErrorKind) -> WalError {
        let seg = self.seg_size();
        WalError { at: Lsn(at), segment: self.segment_name(at / seg), offset: at % seg, kind }
    }

    /// Records the first problem at `at`, seen by reading up to byte `reach`.
    fn fail(&mut self, at: u64, reach: u64, kind: WalErrorKind) -> Result<(), WalError> {
        if self.failed.is_none() {
            let e = self.error(at, kind);
            self.failed = Some((e, reach));
        }
        self.result()
    }

    /// `Err` when a problem is known to count (the end is known); `Ok` otherwise.
    fn result(&self) -> Result<(), WalError> {
        match (&self.failed, self.end) {
            (Some((e, reach)), Some(end)) if *reach < end => Err(e.clone()),
            _ => Ok(()),
        }
    }

    fn check_done(&mut self) {
        if let (State::Idle, Some(end)) = (&self.state, self.end)
            && self.cursor >= end
        {
            self.done = true;
        }
    }

    /// Pages checked: the first of every segment, and those holding bytes from the cursor on.
    fn page_needed(&self, page_start: u64, seg_start: u64) -> bool {
        if page_start == seg_start {
            return true;
        }
        let block = self.block_or_header();
        !matches!(self.state, State::Idle) || self.cursor < page_start + block
    }

    /// The first 40 bytes of the first segment: learn the block size.
    fn first_long_header(&mut self, seg_start: u64) -> Result<(), WalError> {
        let h = PageHeader::parse(&self.page).expect("40 bytes");
        self.check_magic(seg_start, h.magic)?;
        let Some(long) = h.long else {
            return self.fail(seg_start, seg_start, WalErrorKind::NoLongHeader(h.info));
        };
        if !valid_block_size(long.block_size) {
            let kind = WalErrorKind::BlockSize { found: long.block_size, expected: 0 };
            return self.fail(seg_start, seg_start, kind);
        }
        self.block_size = Some(long.block_size);
        self.page.reserve_exact(long.block_size as usize - self.page.len());
        Ok(())
    }

    fn check_magic(&mut self, at: u64, found: u16) -> Result<(), WalError> {
        match self.magic {
            Some(expected) if expected != found => {
                let major = major_of_magic(expected).unwrap_or(0);
                self.fail(at, at, WalErrorKind::Magic { found, expected, major })
            }
            Some(_) => Ok(()),
            None => match major_of_magic(found) {
                Some(major) => {
                    self.magic = Some(found);
                    self.summary.major = Some(major);
                    Ok(())
                }
                None => self.fail(at, at, WalErrorKind::UnknownMagic(found)),
            },
        }
    }

    fn check_page_header(&mut self, p: u64, h: &PageHeader) -> Result<(), WalError> {
        let seg_size = self.seg_size();
        self.check_magic(p, h.magic)?;
        if self.summary.major.is_none() {
            self.summary.major = major_of_magic(h.magic);
        }
        if h.info & !XLP_ALL_FLAGS != 0 {
            return self.fail(p, p, WalErrorKind::InfoBits(h.info));
        }
        if let Some(long) = h.long {
            match self.system_identifier {
                Some(expected) if expected != long.system_identifier => {
                    let kind = WalErrorKind::SystemIdentifier { found: long.system_identifier, expected };
                    return self.fail(p, p, kind);
                }
                Some(_) => {}
                None => self.system_identifier = Some(long.system_identifier),
            }
            self.summary.system_identifier = self.system_identifier;
            if long.segment_size != self.params.segment_size {
                let kind = WalErrorKind::SegmentSize {
                    found: long.segment_size,
                    expected: self.params.segment_size,
                };
                return self.fail(p, p, kind);
            }
            let block = self.block_size.unwrap_or(0);
            if long.block_size != block {
                return self.fail(p, p, WalErrorKind::BlockSize { found: long.block_size, expected: block });
            }
        } else if p.is_multiple_of(seg_size) {
            return self.fail(p, p, WalErrorKind::NoLongHeader(h.info));
        }
        if h.page_address != p {
            let kind = WalErrorKind::PageAddress { found: Lsn(h.page_address), expected: Lsn(p) };
            return self.fail(p, p, kind);
        }
        if h.timeline == 0 || h.timeline < self.last_tli || h.timeline > self.params.timeline {
            let kind = WalErrorKind::Timeline {
                found: h.timeline,
                previous: self.last_tli,
                range: self.params.timeline,
            };
            return self.fail(p, p, kind);
        }
        self.last_tli = h.timeline;
        self.summary.pages += 1;
        Ok(())
    }

    fn process_page(&mut self, p: u64, page: &[u8]) -> Result<(), WalError> {
        let block = page.len() as u64;
        if let Some(end) = self.end
            && p >= end
        {
            self.done = true; // a record runs past the end: nothing more is read
            return Ok(());
        }
        let h = PageHeader::parse(page).expect("a page is at least 1 kB");
        self.check_page_header(p, &h)?;
        if matches!(self.state, State::Idle) && self.cursor >= p + block {
            return Ok(()); // the first page of a segment, checked for its header only
        }
        let hs = h.size() as u64;
        match &self.state {
            State::Record(_) if h.info & XLP_FIRST_IS_OVERWRITE_CONTRECORD != 0 => {
                // The record's continuation was lost and overwritten (crash recovery): it is
                // abandoned, reading restarts at this page like xlogreader does.
                self.state = State::Idle;
                self.cursor = p + hs;
                self.prev = None;
            }
            State::Record(rec) => {
                let left = rec.tot_len - rec.got;
                let record = Lsn(rec.start);
                if h.info & XLP_FIRST_IS_CONTRECORD == 0 {
                    return self.fail(p, p, WalErrorKind::NoContrecordFlag { record });
                }
                if h.rem_len == 0 || h.rem_len != left {
                    let kind = WalErrorKind::ContrecordLength { found: h.rem_len, expected: left, record };
                    return self.fail(p, p, kind);
                }
                let take = u64::from(left).min(block - hs) as usize;
                self.consume(p + hs, &page[hs as usize..hs as usize + take])?;
                if !matches!(self.state, State::Idle) || self.done {
                    return self.result();
                }
            }
            State::Skip => self.skip_continuation(p, &h, block)?,
            State::Idle => {
                if self.cursor == p {
                    self.cursor = p + hs;
                    if h.info & XLP_FIRST_IS_CONTRECORD != 0 {
                        if self.prev.is_none() && self.summary.records == 0 && p + hs > self.params.start.0 {
                            // Started at a page boundary in the middle of a record: skip its
                            // tail like `pg_waldump --start` (XLogFindNextRecord).
                            self.skip_continuation(p, &h, block)?;
                        } else {
                            return self.fail(p, p, WalErrorKind::ContrecordRequested);
                        }
                    }
                } else if self.cursor < p + hs {
                    let at = self.cursor;
                    return self.fail(at, at, WalErrorKind::RecordOffset { header: hs as usize });
                }
            }
        }
        // Records starting on this page.
        while matches!(self.state, State::Idle) && !self.done && self.cursor < p + block {
            let start = self.cursor;
            if let Some(end) = self.end
                && start + RECORD_HEADER as u64 > end
            {
                // pg_waldump cannot even read this record's header before the end.
                self.done = true;
                break;
            }
            let off = (start - p) as usize;
            let tot_len = u32_at(page, off);
            if (tot_len as usize) < RECORD_HEADER || tot_len > MAX_RECORD_LEN {
                return self.fail(
                    start,
                    start + RECORD_HEADER as u64 - 1,
                    WalErrorKind::RecordLength(tot_len),
                );
            }
            self.state = State::Record(Rec { start, tot_len, got: 0, header: [0; RECORD_HEADER], crc: 0 });
            let take = (tot_len as usize).min(page.len() - off);
            self.consume(start, &page[off..off + take])?;
        }
        self.result()
    }

    /// Skips the continuation that starts page `p` (only at the very start of the range).
    fn skip_continuation(&mut self, p: u64, h: &PageHeader, block: u64) -> Result<(), WalError> {
        let hs = h.size() as u64;
        if h.info & XLP_FIRST_IS_CONTRECORD == 0 {
            self.state = State::Idle;
            self.cursor = p + hs;
            return Ok(());
        }
        if maxalign(u64::from(h.rem_len)) >= block - hs {
            self.state = State::Skip;
            self.cursor = p + block;
        } else {
            self.state = State::Idle;
            self.cursor = p + hs + maxalign(u64::from(h.rem_len));
        }
        Ok(())
    }

    /// The next `bytes` of the record being read, which sit at `pos`.
    fn consume(&mut self, pos: u64, bytes: &[u8]) -> Result<(), WalError> {
        let after = pos + bytes.len() as u64;
        // With a known end, only the bytes before it are read (pg_waldump reads no further):
        // the header is still checked if it lies before the end, the record is not.
        let crossing = self.end.is_some_and(|end| after > end);
        let limit = match self.end {
            Some(end) if crossing => end.saturating_sub(pos) as usize,
            _ => bytes.len(),
        };
        let State::Record(rec) = &mut self.state else { unreachable!("consume outside a record") };
        let mut body = bytes;
        if (rec.got as usize) < RECORD_HEADER {
            let n = (RECORD_HEADER - rec.got as usize).min(body.len());
            if n > limit {
                self.done = true;
                return Ok(());
            }
            rec.header[rec.got as usize..rec.got as usize + n].copy_from_slice(&body[..n]);
            rec.got += n as u32;
            body = &body[n..];
            if rec.got as usize == RECORD_HEADER {
                let start = rec.start;
                let found = u64_at(&rec.header, 8);
                let bad = match self.prev {
                    Some(prev) => (found != prev).then(|| Lsn(prev).to_string()),
                    None => (found >= start).then(|| format!("below {}", Lsn(start))),
                };
                if let Some(expected) = bad {
                    let reach = start + RECORD_HEADER as u64 - 1;
                    return self.fail(start, reach, WalErrorKind::PrevLink { found: Lsn(found), expected });
                }
            }
        }
        if crossing {
            // The record runs past the end of the range: pg_waldump does not read it.
            self.done = true;
            return Ok(());
        }
        let State::Record(rec) = &mut self.state else { unreachable!() };
        rec.crc = crc32c::crc32c_append(rec.crc, body);
        rec.got += body.len() as u32;
        self.cursor = after;
        if rec.got < rec.tot_len {
            return Ok(());
        }
        let computed = crc32c::crc32c_append(rec.crc, &rec.header[..RECORD_CRC_OFFSET]);
        let stored = u32_at(&rec.header, RECORD_CRC_OFFSET);
        let (start, tot_len) = (rec.start, rec.tot_len);
        let (info, rmid) = (rec.header[16], rec.header[17]);
        if computed != stored {
            let kind = WalErrorKind::Checksum { record: Lsn(start), stored, computed };
            return self.fail(start, after - 1, kind);
        }
        self.summary.records += 1;
        self.summary.record_bytes += u64::from(tot_len);
        self.summary.last_record_end = Lsn(after);
        self.prev = Some(start);
        self.state = State::Idle;
        self.cursor = maxalign(after);
        if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            // The rest of the segment is unused: the next record starts the next segment.
            let seg = self.seg_size();
            self.cursor = self.cursor.div_ceil(seg) * seg;
            self.summary.switches += 1;
        }
        self.check_done();
        Ok(())
    }
}
