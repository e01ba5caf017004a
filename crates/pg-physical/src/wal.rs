//! The WAL spool of stream mode: `XLogData` payloads written into segment files on disk.
//!
//! Stream mode receives WAL on a second connection while the base backup streams on the first.
//! A record sink takes one file at a time, so the WAL cannot be interleaved with the archive's
//! files as it arrives: it is written here, into a private temporary directory (memory stays
//! bounded, disk use is the WAL generated during the backup), and emitted as
//! `/data/pg_wal/<segment>` records once the base backup has ended and the spool holds
//! everything up to the backup's end LSN.
//!
//! Layout rules (protocol-replication.html, `START_REPLICATION`; `receivelog.c`): each payload
//! goes at offset `start mod segment_size` of segment `start / segment_size`, a payload may cross
//! a segment boundary, and every segment file is full size (the last one zero-padded), named
//! `TTTTTTTTXXXXXXXXYYYYYYYY` from the timeline and the segment number.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The name of the WAL segment file holding `lsn` on `timeline`.
pub fn segment_file_name(timeline: u32, lsn: u64, segment_size: u64) -> String {
    let segno = lsn / segment_size;
    let per_xlogid = 0x1_0000_0000 / segment_size;
    format!("{timeline:08X}{:08X}{:08X}", segno / per_xlogid, segno % per_xlogid)
}

/// A `SHOW wal_segment_size` answer that is not a valid segment size.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SegmentSizeTextError {
    /// Not decimal digits followed by nothing, `B`, `kB`, `MB` or `GB`.
    #[error("wal_segment_size {0:?} is not a number of B, kB, MB or GB")]
    Syntax(String),
    /// The number times its unit does not fit in 64 bits.
    #[error("wal_segment_size {0:?} overflows 64 bits")]
    Overflow(String),
    /// A well-formed size outside what PostgreSQL allows.
    #[error("wal_segment_size {0:?}: {1}")]
    Invalid(String, pg_wire::replication::SegmentSizeError),
}

/// Parses `SHOW wal_segment_size` (`16MB`, `1GB`, `1024kB`) into bytes, and checks it is a
/// power of two between 1 MB and 1 GB. A number whose value in bytes overflows is an error,
/// never a wrapped value (`17592186044417MB` is not 1 MB).
pub fn parse_segment_size(text: &str) -> Result<u64, SegmentSizeTextError> {
    let syntax = || SegmentSizeTextError::Syntax(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (num, unit) = trimmed.split_at(split);
    if num.is_empty() {
        return Err(syntax());
    }
    let shift = match unit.trim() {
        "" | "B" => 0,
        "kB" => 10,
        "MB" => 20,
        "GB" => 30,
        _ => return Err(syntax()),
    };
    let overflow = || SegmentSizeTextError::Overflow(text.to_owned());
    // Digits only, so the only parse failure left is a value above u64::MAX.
    let n: u64 = num.parse().map_err(|_| overflow())?;
    let bytes = n.checked_mul(1 << shift).ok_or_else(overflow)?;
    pg_wire::replication::check_segment_size(bytes)
        .map_err(|e| SegmentSizeTextError::Invalid(text.to_owned(), e))?;
    Ok(bytes)
}

/// One piece of an `XLogData` payload placed in a segment file (see [`place`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The segment file's name (`TTTTTTTTXXXXXXXXYYYYYYYY`).
    pub segment: String,
    /// Where the piece starts inside the segment.
    pub offset: u64,
    /// Which bytes of the payload go there.
    pub range: std::ops::Range<usize>,
}

/// Where the `len` bytes of a payload that starts at `start` go: one piece per segment it
/// touches, in order (sans-IO; [`WalSpool::write`] performs it). `segment_size` must be valid
/// (see `parse_segment_size`). A payload running past the end of the 64-bit WAL address space
/// is an error.
pub fn place(timeline: u32, segment_size: u64, start: u64, len: usize) -> Result<Vec<Piece>, WalError> {
    if start.checked_add(len as u64).is_none() {
        return Err(WalError::Overflow { start, len });
    }
    let mut out = Vec::new();
    let mut position = start;
    let mut done = 0;
    while done < len {
        let offset = position % segment_size;
        let room = usize::try_from(segment_size - offset).unwrap_or(usize::MAX);
        let n = room.min(len - done);
        out.push(Piece {
            segment: segment_file_name(timeline, position, segment_size),
            offset,
            range: done..done + n,
        });
        position += n as u64;
        done += n;
    }
    Ok(out)
}

/// An LSN as PostgreSQL prints it (`X/X`).
fn lsn(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff)
}

/// A WAL position outside what the spool accepts.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A payload that does not continue where the previous one ended.
    #[error("WAL payload at {} does not continue the stream at {}", lsn(*got), lsn(*expected))]
    Gap {
        /// Where the stream was.
        expected: u64,
        /// Where the payload starts.
        got: u64,
    },
    /// A payload that would run past the end of the 64-bit WAL address space.
    #[error("WAL payload of {len} bytes at {} runs past the end of the WAL address space", lsn(*start))]
    Overflow {
        /// Where the payload starts.
        start: u64,
        /// Its length.
        len: usize,
    },
    /// An IO error on the spool.
    #[error("WAL spool {path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// WAL segments received so far, on disk.
#[derive(Debug)]
pub struct WalSpool {
    dir: tempfile::TempDir,
    segment_size: u64,
    timeline: u32,
    /// The next byte expected.
    position: u64,
    current: Option<(String, File)>,
    segments: Vec<String>,
}

impl WalSpool {
    /// A spool in a new private directory under `parent` (the system temp dir if `None`),
    /// receiving WAL from `start` (rounded down to its segment) on `timeline`.
    pub fn new(parent: Option<&Path>, segment_size: u64, timeline: u32, start: u64) -> io::Result<Self> {
        let dir = match parent {
            Some(p) => tempfile::Builder::new().prefix("pgplakar-wal-").tempdir_in(p)?,
            None => tempfile::Builder::new().prefix("pgplakar-wal-").tempdir()?,
        };
        Ok(Self {
            dir,
            segment_size,
            timeline,
            position: start - start % segment_size,
            current: None,
            segments: Vec::new(),
        })
    }

    /// Where the stream should start (the segment start of the requested position).
    pub fn start_position(&self) -> u64 {
        self.position
    }

    /// The first byte not yet received.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Writes an `XLogData` payload that starts at `start`, where [`place`] says.
    pub fn write(&mut self, start: u64, data: &[u8]) -> Result<(), WalError> {
        if start != self.position {
            return Err(WalError::Gap { expected: self.position, got: start });
        }
        for piece in place(self.timeline, self.segment_size, start, data.len())? {
            let dir = self.dir.path().to_owned();
            let lsn = self.position;
            let (name, f) = self.segment_for(lsn)?;
            debug_assert_eq!(*name, piece.segment);
            f.write_all(&data[piece.range.clone()])
                .map_err(|source| WalError::Io { path: dir.join(&*name), source })?;
            self.position += piece.range.len() as u64;
        }
        Ok(())
    }

    fn segment_for(&mut self, lsn: u64) -> Result<(&mut String, &mut File), WalError> {
        let name = segment_file_name(self.timeline, lsn, self.segment_size);
        if self.current.as_ref().is_none_or(|(n, _)| *n != name) {
            self.close_current()?;
            let path = self.dir.path().join(&name);
            let io = |source| WalError::Io { path: path.clone(), source };
            let mut f = OpenOptions::new().write(true).create_new(true).open(&path).map_err(io)?;
            f.seek(SeekFrom::Start(lsn % self.segment_size)).map_err(io)?;
            self.segments.push(name.clone());
            self.current = Some((name, f));
        }
        let (n, f) = self.current.as_mut().expect("just set");
        Ok((n, f))
    }

    /// Pads the open segment to full size and closes it.
    fn close_current(&mut self) -> Result<(), WalError> {
        if let Some((name, f)) = self.current.take() {
            let path = self.dir.path().join(&name);
            f.set_len(self.segment_size).map_err(|source| WalError::Io { path, source })?;
        }
        Ok(())
    }

    /// Closes the last segment (zero-padded to full size) and returns the segments received,
    /// oldest first, with their paths.
    pub fn finish(&mut self) -> Result<Vec<(String, PathBuf)>, WalError> {
        self.close_current()?;
        Ok(self.segments.iter().map(|n| (n.clone(), self.dir.path().join(n))).collect())
    }

    /// The segment size.
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// Removes a segment once it has been handed to the sink.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.path().join(name))
    }
}

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `walspool` fuzz target, also replayed by the crate's tests.

    use super::*;

    /// Byte 0 picks the segment size (1 MiB … 1 GiB), bytes 1..9 the start LSN, 9..13 the
    /// timeline; then each 3 bytes are a payload: a flag (bit 0: start elsewhere than where the
    /// stream is, to exercise the gap rule) and a `u16` length. Every payload is placed with
    /// [`place`]: the pieces must cover it in order without gap, stay inside their segment, be
    /// named after the segment their LSN falls in, and continue where the previous one ended.
    pub fn walspool(data: &[u8]) {
        if data.len() < 13 {
            return;
        }
        let segment_size = 1u64 << (20 + u32::from(data[0] % 11));
        let start = u64::from_be_bytes(data[1..9].try_into().expect("8 bytes"));
        let timeline = u32::from_be_bytes(data[9..13].try_into().expect("4 bytes"));
        let mut position = start - start % segment_size;
        for w in data[13..].chunks_exact(3) {
            let len = usize::from(u16::from_be_bytes([w[1], w[2]]));
            // The spool's gap rule is positional; a payload elsewhere is refused before placing.
            let at = if w[0] & 1 == 1 { position.wrapping_add(u64::from(w[0])) } else { position };
            if at != position {
                continue;
            }
            let pieces = match place(timeline, segment_size, at, len) {
                Ok(p) => p,
                Err(e) => {
                    assert!(at.checked_add(len as u64).is_none());
                    std::hint::black_box(e.to_string());
                    return;
                }
            };
            let mut expect = 0;
            for p in &pieces {
                assert_eq!(p.range.start, expect, "pieces leave a gap");
                assert!(!p.range.is_empty());
                assert_eq!(p.offset, position % segment_size);
                assert!(p.offset + p.range.len() as u64 <= segment_size, "a piece crosses its segment's end");
                assert_eq!(p.segment, segment_file_name(timeline, position, segment_size));
                assert_eq!(p.segment.len(), 24);
                position += p.range.len() as u64;
                expect = p.range.end;
            }
            assert_eq!(expect, len, "pieces do not cover the payload");
        }
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn walspool_regressions_replay() {
            let dir =
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/walspool");
            let mut n = 0;
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    super::walspool(&std::fs::read(&path).unwrap());
                    n += 1;
                }
            }
            assert!(n >= 2, "the committed seeds are missing");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_past_the_address_space_is_an_error() {
        let seg = 1u64 << 20;
        assert!(matches!(place(1, seg, u64::MAX - 10, 100), Err(WalError::Overflow { .. })));
        assert_eq!(place(1, seg, u64::MAX - 10, 10).unwrap().len(), 1);
        let p = place(1, seg, seg - 10, 30).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].offset, p[0].range.clone(), p[1].offset, p[1].range.clone()),
            (seg - 10, 0..10, 0, 10..30)
        );
    }

    #[test]
    fn segment_names() {
        const MB16: u64 = 16 << 20;
        assert_eq!(segment_file_name(1, 0x0300_0028, MB16), "000000010000000000000003");
        assert_eq!(segment_file_name(2, 0x1_FF00_0000, MB16), "0000000200000001000000FF");
        assert_eq!(segment_file_name(1, 0x1_0000_0000 + (5 << 20), 1 << 20), "000000010000000100000005");
    }

    #[test]
    fn segment_sizes() {
        assert_eq!(parse_segment_size("16MB"), Ok(16 << 20));
        assert_eq!(parse_segment_size("1MB"), Ok(1 << 20));
        assert_eq!(parse_segment_size("1GB"), Ok(1 << 30));
        assert_eq!(parse_segment_size("1024kB"), Ok(1 << 20));
        assert_eq!(parse_segment_size(" 16 MB "), Ok(16 << 20));
        for bad in ["", "3MB", "2GB", "512kB", "16 XB", "MB", "-16MB", "+16MB", "16mb"] {
            assert!(parse_segment_size(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_segment_size("16 XB").unwrap_err().to_string(),
            "wal_segment_size \"16 XB\" is not a number of B, kB, MB or GB"
        );
    }

    /// Issue 13: `17592186044417MB` is 2^64 + 2^20 bytes; the shift wrapped it to 1 MiB.
    #[test]
    fn segment_size_overflow_is_an_error() {
        for text in ["17592186044417MB", "18014398509481985kB", "17179869185GB", "18446744073709551616"] {
            assert_eq!(
                parse_segment_size(text),
                Err(SegmentSizeTextError::Overflow(text.to_owned())),
                "{text}"
            );
        }
        assert_eq!(
            parse_segment_size("17592186044417MB").unwrap_err().to_string(),
            "wal_segment_size \"17592186044417MB\" overflows 64 bits"
        );
        // The largest value that fits is a syntax-valid size that is simply not allowed.
        assert!(matches!(parse_segment_size("17592186044415MB"), Err(SegmentSizeTextError::Invalid(..))));
    }

    #[test]
    fn payloads_fill_full_size_segments_across_boundaries() {
        let seg = 1u64 << 20;
        let mut spool = WalSpool::new(None, seg, 1, seg + 40).unwrap();
        assert_eq!(spool.start_position(), seg);
        let first = vec![1u8; (seg - 100) as usize];
        spool.write(seg, &first).unwrap();
        // Crosses into the next segment.
        spool.write(2 * seg - 100, &[2u8; 300]).unwrap();
        let err = spool.write(2 * seg + 999, b"x").unwrap_err().to_string();
        assert_eq!(err, "WAL payload at 0/2003E7 does not continue the stream at 0/2000C8");
        let segs = spool.finish().unwrap();
        let names: Vec<_> = segs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["000000010000000000000001", "000000010000000000000002"]);
        let a = fs::read(&segs[0].1).unwrap();
        let b = fs::read(&segs[1].1).unwrap();
        assert_eq!((a.len() as u64, b.len() as u64), (seg, seg));
        assert!(a[..(seg - 100) as usize].iter().all(|&x| x == 1));
        assert!(a[(seg - 100) as usize..].iter().all(|&x| x == 2));
        assert!(b[..200].iter().all(|&x| x == 2));
        assert!(b[200..].iter().all(|&x| x == 0), "the last segment is zero-padded");
    }
}
