//! What can be wrong with WAL, and where.

use pg_wire::replication::Lsn;

/// A problem found in WAL: what, and where (the segment file, the offset in it, the LSN).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} (WAL segment {segment}, offset {offset}, LSN {at})")]
pub struct WalError {
    /// Where the problem is.
    pub at: Lsn,
    /// The name of the segment file holding `at` on the range's timeline.
    pub segment: String,
    /// The offset of `at` in that file.
    pub offset: u64,
    /// What is wrong.
    pub kind: WalErrorKind,
}

/// What is wrong with WAL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WalErrorKind {
    /// `xlp_magic` is not the one of the expected major version.
    #[error("invalid page magic {found:04X}: expected {expected:04X} (PostgreSQL {major})")]
    Magic {
        /// The page's magic.
        found: u16,
        /// The expected magic.
        expected: u16,
        /// The major version it belongs to.
        major: u32,
    },
    /// `xlp_magic` of no major version 12–18.
    #[error("invalid page magic {0:04X}: not WAL of PostgreSQL 12 to 18")]
    UnknownMagic(u16),
    /// Undefined `xlp_info` bits, or the first page of a segment without its long header.
    #[error("invalid page info bits {0:04X}")]
    InfoBits(u16),
    /// The first page of a segment has no long header.
    #[error("the first page of the segment has no long header (info bits {0:04X})")]
    NoLongHeader(u16),
    /// `xlp_pageaddr` is not the page's own address (typically a recycled segment).
    #[error("unexpected page address {found}: expected {expected}")]
    PageAddress {
        /// The address on the page.
        found: Lsn,
        /// The page's position.
        expected: Lsn,
    },
    /// `xlp_tli` went backwards, is zero, or is beyond the range's timeline.
    #[error("page timeline {found} out of sequence (previous page {previous}, range timeline {range})")]
    Timeline {
        /// The page's timeline.
        found: u32,
        /// The previous page's.
        previous: u32,
        /// The timeline being read.
        range: u32,
    },
    /// The long header's system identifier is another cluster's.
    #[error("WAL of another database system: system identifier {found}, expected {expected}")]
    SystemIdentifier {
        /// In the page header.
        found: u64,
        /// Expected (from the manifest, `pg_control`, or the first segment).
        expected: u64,
    },
    /// The long header's segment size differs from the expected one.
    #[error("segment size {found} in the page header: expected {expected}")]
    SegmentSize {
        /// In the page header.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The long header's WAL block size is invalid or differs from the first segment's.
    #[error("WAL block size {found} in the page header: expected {expected}")]
    BlockSize {
        /// In the page header.
        found: u32,
        /// Expected (0: a power of two between 1 and 64 kB).
        expected: u32,
    },
    /// A record position inside a page header.
    #[error("invalid record offset: the page header is {header} bytes")]
    RecordOffset {
        /// The header's size.
        header: usize,
    },
    /// A record was expected to start at the top of a page that continues an earlier record.
    #[error("a record should start here but the page is flagged as a continuation")]
    ContrecordRequested,
    /// A record continues on this page but the page is not flagged as a continuation.
    #[error("no continuation flag for the record at {record}")]
    NoContrecordFlag {
        /// The record being continued.
        record: Lsn,
    },
    /// `xlp_rem_len` disagrees with the record being continued.
    #[error("continuation length {found}: the record at {record} has {expected} bytes left")]
    ContrecordLength {
        /// `xlp_rem_len`.
        found: u32,
        /// Bytes left of the record.
        expected: u32,
        /// The record being continued.
        record: Lsn,
    },
    /// `xl_tot_len` is too small or absurdly large.
    #[error("invalid record length {0}")]
    RecordLength(u32),
    /// `xl_prev` does not point at the previous record.
    #[error("record with incorrect prev-link {found}: expected {expected}")]
    PrevLink {
        /// `xl_prev`.
        found: Lsn,
        /// The previous record (or, for the first record read, "below this record").
        expected: String,
    },
    /// The record's CRC-32C does not match its bytes.
    #[error("incorrect checksum of the record at {record}: stored {stored:08x}, computed {computed:08x}")]
    Checksum {
        /// The record.
        record: Lsn,
        /// `xl_crc`.
        stored: u32,
        /// Computed over the record.
        computed: u32,
    },
    /// More bytes than a segment holds were fed as one segment.
    #[error("the segment file is larger than the segment size {0}")]
    SegmentTooLong(u32),
    /// The segment file ended before the bytes the range needs.
    #[error(
        "the segment file ends after {size} bytes; the range needs more of it (segment size {segment_size})"
    )]
    SegmentTooShort {
        /// Bytes the file had.
        size: u64,
        /// The segment size.
        segment_size: u32,
    },
    /// A segment other than the next one was fed.
    #[error("segment {fed} fed where {wanted} is needed next")]
    UnexpectedSegment {
        /// The segment fed.
        fed: String,
        /// The segment needed.
        wanted: String,
    },
    /// No WAL at all from here, before the end of the range.
    #[error("no WAL from here on (missing or truncated segment); the range ends at {end}")]
    Incomplete {
        /// The end of the range.
        end: Lsn,
    },
    /// The range's start is after its end, or bytes were fed outside a segment.
    #[error("{0}")]
    Usage(String),
}
