//! The on-disk layout of WAL pages and record headers, PostgreSQL 12–18.
//!
//! From `src/include/access/xlog_internal.h` (page headers, segment names) and
//! `src/include/access/xlogrecord.h` (the record header); every integer is in the server's byte
//! order, little-endian on every platform this project runs on.

/// `XLOG_PAGE_MAGIC` of each major version (seen in the first page of segments written by real
/// servers of each major).
pub const PAGE_MAGICS: [(u32, u16); 7] =
    [(12, 0xD101), (13, 0xD106), (14, 0xD10D), (15, 0xD110), (16, 0xD113), (17, 0xD116), (18, 0xD118)];

/// The `XLOG_PAGE_MAGIC` of a major version, if it is one this crate knows.
pub fn page_magic(major: u32) -> Option<u16> {
    PAGE_MAGICS.iter().find(|(m, _)| *m == major).map(|(_, magic)| *magic)
}

/// The major version a page magic belongs to.
pub fn major_of_magic(magic: u16) -> Option<u32> {
    PAGE_MAGICS.iter().find(|(_, m)| *m == magic).map(|(major, _)| *major)
}

/// `XLP_FIRST_IS_CONTRECORD`: the page starts with the rest of a record begun earlier.
pub const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
/// `XLP_LONG_HEADER`: the page has the long header (first page of a segment).
pub const XLP_LONG_HEADER: u16 = 0x0002;
/// `XLP_BKP_REMOVABLE`: full-page images starting on this page are optional (12–18; the bit is
/// reused after 18).
pub const XLP_BKP_REMOVABLE: u16 = 0x0004;
/// `XLP_FIRST_IS_OVERWRITE_CONTRECORD`: a record whose continuation was lost was abandoned and
/// this page starts a new one (12.9, 13.5 and 14 on).
pub const XLP_FIRST_IS_OVERWRITE_CONTRECORD: u16 = 0x0008;
/// Every defined `xlp_info` bit in 12–18.
pub const XLP_ALL_FLAGS: u16 = 0x000F;

/// `SizeOfXLogShortPHD`: the short page header, MAXALIGNed.
pub const SHORT_HEADER: usize = 24;
/// `SizeOfXLogLongPHD`: the long page header, MAXALIGNed.
pub const LONG_HEADER: usize = 40;
/// `SizeOfXLogRecord`: the record header.
pub const RECORD_HEADER: usize = 24;
/// Offset of `xl_crc` in the record header: the CRC covers the header up to here.
pub const RECORD_CRC_OFFSET: usize = 20;
/// Records start on 8-byte boundaries (`MAXALIGN`).
pub const ALIGN: u64 = 8;
/// Upper bound on `xl_tot_len` (`XLogRecordMaxSize` is 1020 MiB); only a sanity check, nothing
/// is ever allocated by a record's length.
pub const MAX_RECORD_LEN: u32 = 1 << 30;
/// `RM_XLOG_ID`.
pub const RM_XLOG_ID: u8 = 0;
/// `XLOG_SWITCH`, in the high nibble of `xl_info` (`XLR_INFO_MASK` is the low one).
pub const XLOG_SWITCH: u8 = 0x40;

/// `MAXALIGN`.
pub fn maxalign(x: u64) -> u64 {
    x.div_ceil(ALIGN) * ALIGN
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A page header (`XLogPageHeaderData`, plus the fields of `XLogLongPageHeaderData` when
/// [`XLP_LONG_HEADER`] is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// `xlp_magic`.
    pub magic: u16,
    /// `xlp_info`.
    pub info: u16,
    /// `xlp_tli`: the timeline of the first record on the page.
    pub timeline: u32,
    /// `xlp_pageaddr`: the LSN of the page itself.
    pub page_address: u64,
    /// `xlp_rem_len`: bytes of a continued record still to come.
    pub rem_len: u32,
    /// The long header's fields, when present.
    pub long: Option<LongFields>,
}

/// The fields only the long header has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongFields {
    /// `xlp_sysid`: the system identifier from `pg_control`.
    pub system_identifier: u64,
    /// `xlp_seg_size`.
    pub segment_size: u32,
    /// `xlp_xlog_blcksz`.
    pub block_size: u32,
}

impl PageHeader {
    /// Parses the header at the start of `page`: `None` when `page` is too short for it (24
    /// bytes, or 40 when the long-header flag is set).
    pub fn parse(page: &[u8]) -> Option<PageHeader> {
        if page.len() < SHORT_HEADER {
            return None;
        }
        let info = u16_at(page, 2);
        let long = if info & XLP_LONG_HEADER != 0 {
            if page.len() < LONG_HEADER {
                return None;
            }
            Some(LongFields {
                system_identifier: u64_at(page, 24),
                segment_size: u32_at(page, 32),
                block_size: u32_at(page, 36),
            })
        } else {
            None
        };
        Some(PageHeader {
            magic: u16_at(page, 0),
            info,
            timeline: u32_at(page, 4),
            page_address: u64_at(page, 8),
            rem_len: u32_at(page, 16),
            long,
        })
    }

    /// The header's size on the page (`XLogPageHeaderSize`).
    pub fn size(&self) -> usize {
        if self.info & XLP_LONG_HEADER != 0 { LONG_HEADER } else { SHORT_HEADER }
    }
}

/// A WAL block size PostgreSQL can be built with (`--with-wal-blocksize`: 1 to 64 kB).
pub fn valid_block_size(size: u32) -> bool {
    size.is_power_of_two() && (1024..=65536).contains(&size)
}

/// The name of WAL segment `segno` on `timeline` (`XLogFileName`).
pub fn segment_name(timeline: u32, segno: u64, segment_size: u32) -> String {
    let per_id = 0x1_0000_0000 / u64::from(segment_size.max(1));
    format!("{timeline:08X}{:08X}{:08X}", (segno / per_id) as u32, (segno % per_id) as u32)
}

/// Parses a segment file name (`IsXLogFileName`, `XLogFromFileName`): the timeline and segment
/// number, or `None` when `name` is not 24 upper-case hex digits or names an impossible segment.
pub fn parse_segment_name(name: &[u8], segment_size: u32) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.iter().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(b)) {
        return None;
    }
    let text = std::str::from_utf8(name).ok()?;
    let tli = u32::from_str_radix(&text[..8], 16).ok()?;
    let log = u64::from_str_radix(&text[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&text[16..], 16).ok()?;
    let per_id = 0x1_0000_0000 / u64::from(segment_size.max(1));
    if seg >= per_id {
        return None;
    }
    Some((tli, log * per_id + seg))
}
