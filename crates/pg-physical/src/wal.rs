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

    /// Writes an `XLogData` payload that starts at `start`.
    pub fn write(&mut self, start: Lsn, mut data: &[u8]) -> Result<(), WalError> {
        if start.0 != self.position {
            return Err(WalError::Gap { expected: Lsn(self.position), got: start });
        }
        while !data.is_empty() {
            let offset = self.position % self.segment_size;
            let room = (self.segment_size - offset) as usize;
            let n = room.min(data.len());
            let dir = self.dir.path().to_owned();
            let (name, f) = self.segment_for(self.position)?;
            f.write_all(&data[..n]).map_err(|error| WalError::Io { path: dir.join(&*name), error })?;
            self.position += n as u64;
            data = &data[n..];
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
