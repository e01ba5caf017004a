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

use pg_wire::replication::{Lsn, SegmentSizeError, check_segment_size};

/// A failure of the WAL spool.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A payload that does not continue where the previous one ended.
    #[error("WAL payload at {got} does not continue the stream at {expected}")]
    Gap {
        /// Where the stream was.
        expected: Lsn,
        /// Where the payload starts.
        got: Lsn,
    },
    /// A segment size PostgreSQL does not allow.
    #[error("{0}")]
    SegmentSize(SegmentSizeError),
    /// A payload that would run past the end of the 64-bit WAL address space.
    #[error("WAL payload of {len} bytes at {start} runs past the end of the WAL address space")]
    Overflow {
        /// Where the payload starts.
        start: Lsn,
        /// Its length.
        len: usize,
    },
    /// An IO error on the spool.
    #[error("WAL spool {path}: {error}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The error.
        error: io::Error,
    },
    /// A spooled segment that is not whole when it is read back.
    #[error("WAL segment {segment}: {read} bytes in the spool, expected {expected}")]
    Short {
        /// The segment's file name.
        segment: String,
        /// Bytes read back.
        read: u64,
        /// The segment size.
        expected: u64,
    },
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
/// touches, in order (sans-IO; [`WalSpool::write`] performs it). A segment size PostgreSQL does
/// not allow, or a payload running past the end of the 64-bit WAL address space, is an error.
pub fn place(timeline: u32, segment_size: u64, start: Lsn, len: usize) -> Result<Vec<Piece>, WalError> {
    check_segment_size(segment_size).map_err(WalError::SegmentSize)?;
    if start.checked_add(len as u64).is_none() {
        return Err(WalError::Overflow { start, len });
    }
    let mut out = Vec::new();
    let mut position = start.0;
    let mut done = 0;
    while done < len {
        let offset = position % segment_size;
        let room = usize::try_from(segment_size - offset).unwrap_or(usize::MAX);
        let n = room.min(len - done);
        out.push(Piece {
            segment: Lsn(position).wal_file_name(timeline, segment_size).map_err(WalError::SegmentSize)?,
            offset,
            range: done..done + n,
        });
        position += n as u64;
        done += n;
    }
    Ok(out)
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
    /// A spool in a new private directory (mode 0700, segments 0600: this is cluster data)
    /// under `parent` (the system temp dir if `None`), receiving WAL from `start` (rounded
    /// down to its segment) on `timeline`.
    pub fn new(
        parent: Option<&Path>,
        segment_size: u64,
        timeline: u32,
        start: Lsn,
    ) -> Result<Self, WalError> {
        check_segment_size(segment_size).map_err(WalError::SegmentSize)?;
        let mut builder = tempfile::Builder::new();
        builder.prefix("pgplakar-wal-").permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
        let dir = match parent {
            Some(p) => builder.tempdir_in(p),
            None => builder.tempdir(),
        }
        .map_err(|error| WalError::Io {
            path: parent.map_or_else(std::env::temp_dir, Path::to_owned),
            error,
        })?;
        Ok(Self {
            dir,
            segment_size,
            timeline,
            position: start.0 - start.0 % segment_size,
            current: None,
            segments: Vec::new(),
        })
    }

    /// Where the stream should start (the segment start of the requested position).
    pub fn start_position(&self) -> Lsn {
        Lsn(self.position)
    }

    /// The first byte not yet received.
    pub fn position(&self) -> Lsn {
        Lsn(self.position)
    }

    /// Writes an `XLogData` payload that starts at `start`, where [`place`] says.
    pub fn write(&mut self, start: Lsn, data: &[u8]) -> Result<(), WalError> {
        if start.0 != self.position {
            return Err(WalError::Gap { expected: Lsn(self.position), got: start });
        }
        for piece in place(self.timeline, self.segment_size, start, data.len())? {
            let dir = self.dir.path().to_owned();
            let lsn = self.position;
            let (name, f) = self.segment_for(lsn)?;
            debug_assert_eq!(*name, piece.segment);
            f.write_all(&data[piece.range.clone()])
                .map_err(|error| WalError::Io { path: dir.join(&*name), error })?;
            self.position += piece.range.len() as u64;
        }
        Ok(())
    }

    fn segment_for(&mut self, lsn: u64) -> Result<(&mut String, &mut File), WalError> {
        let name = Lsn(lsn).wal_file_name(self.timeline, self.segment_size).map_err(WalError::SegmentSize)?;
        if self.current.as_ref().is_none_or(|(n, _)| *n != name) {
            self.close_current()?;
            let path = self.dir.path().join(&name);
            let io = |error| WalError::Io { path: path.clone(), error };
            let mut f = std::os::unix::fs::OpenOptionsExt::mode(
                OpenOptions::new().write(true).create_new(true),
                0o600,
            )
            .open(&path)
            .map_err(io)?;
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
            f.set_len(self.segment_size).map_err(|error| WalError::Io { path, error })?;
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
            let pieces = match place(timeline, segment_size, Lsn(at), len) {
                Ok(p) => p,
                Err(e) => {
                    assert!(matches!(e, WalError::Overflow { .. }), "{e}");
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
                let name = Lsn(position).wal_file_name(timeline, segment_size).expect("valid size");
                assert_eq!(p.segment, name);
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
    fn the_spool_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        // Whatever the umask lets through, the spool is the owner's only.
        let seg = 1u64 << 20;
        let mut spool = WalSpool::new(Some(tmp.path()), seg, 1, Lsn(seg)).unwrap();
        spool.write(Lsn(seg), &[1u8; 100]).unwrap();
        let dir = fs::read_dir(tmp.path()).unwrap().next().unwrap().unwrap().path();
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let segment = dir.join("000000010000000000000001");
        assert_eq!(fs::metadata(&segment).unwrap().permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn payload_past_the_address_space_is_an_error() {
        let seg = 1u64 << 20;
        let err = place(1, seg, Lsn(u64::MAX - 10), 100).unwrap_err();
        assert!(matches!(err, WalError::Overflow { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "WAL payload of 100 bytes at FFFFFFFF/FFFFFFF5 runs past the end of the WAL address space"
        );
        assert_eq!(place(1, seg, Lsn(u64::MAX - 10), 10).unwrap().len(), 1);
        let p = place(1, seg, Lsn(seg - 10), 30).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(
            (p[0].offset, p[0].range.clone(), p[1].offset, p[1].range.clone()),
            (seg - 10, 0..10, 0, 10..30)
        );
        assert_eq!(
            (p[0].segment.as_str(), p[1].segment.as_str()),
            ("000000010000000000000000", "000000010000000000000001")
        );
        assert!(matches!(place(1, 3 << 20, Lsn(0), 1), Err(WalError::SegmentSize(_))));
    }

    #[test]
    fn payloads_fill_full_size_segments_across_boundaries() {
        let seg = 1u64 << 20;
        let mut spool = WalSpool::new(None, seg, 1, Lsn(seg + 40)).unwrap();
        assert_eq!(spool.start_position(), Lsn(seg));
        let first = vec![1u8; (seg - 100) as usize];
        spool.write(Lsn(seg), &first).unwrap();
        // Crosses into the next segment.
        spool.write(Lsn(2 * seg - 100), &[2u8; 300]).unwrap();
        let err = spool.write(Lsn(2 * seg + 999), b"x").unwrap_err().to_string();
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

    #[test]
    fn refuses_a_segment_size_postgres_does_not_allow() {
        let err = WalSpool::new(None, 3 << 20, 1, Lsn(0)).unwrap_err();
        assert!(matches!(err, WalError::SegmentSize(_)), "{err}");
    }
}
