//! Reading the backup's WAL as it passes: the WAL range of the backup (its start to its end on
//! its timeline) must be present and readable record by record — segment headers, continuity,
//! the CRC-32C of every record — before the backup counts as complete. Fetch mode reads the
//! `pg_wal/` segments of the base archive, stream mode the spooled segments; the same checks as
//! `pgplakar verify` and `pg_verifybackup` (through `pg_waldump`) make on the result.

use pg_wal::{WalParams, WalReader};
use pg_wire::replication::Lsn;

use crate::PhysicalError;

/// What the backup's WAL is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalFacts {
    /// `wal_segment_size`.
    pub segment_size: u64,
    /// `IDENTIFY_SYSTEM.systemid`.
    pub system_identifier: Option<u64>,
    /// The server's major version.
    pub major: u32,
}

/// The check of one backup's WAL (deferred: the end is known only after the WAL has passed).
#[derive(Debug)]
pub struct WalCheck {
    reader: WalReader,
    timeline: u32,
    /// The segment being fed, if the reader wants it.
    feeding: bool,
}

impl WalCheck {
    /// A check of the WAL from `start` on `timeline`.
    pub fn new(facts: WalFacts, start: Lsn, timeline: u32) -> Result<WalCheck, PhysicalError> {
        let segment_size = u32::try_from(facts.segment_size)
            .map_err(|_| PhysicalError::WalCheck(format!("WAL segment size {} bytes", facts.segment_size)))?;
        let params = WalParams {
            timeline,
            start,
            segment_size,
            system_identifier: facts.system_identifier,
            major: pg_wal::format::page_magic(facts.major).map(|_| facts.major),
        };
        let reader = WalReader::new(params).map_err(wal_error)?;
        Ok(WalCheck { reader, timeline, feeding: false })
    }

    /// A file named `name` (in `pg_wal/`) starts: true if it is a segment of the range.
    pub fn segment_start(&mut self, name: &[u8]) -> Result<bool, PhysicalError> {
        self.segment_end()?;
        let size = self.reader.params().segment_size;
        let Some((timeline, segno)) = pg_wal::format::parse_segment_name(name, size) else {
            return Ok(false);
        };
        if timeline != self.timeline {
            return Ok(false);
        }
        self.feeding = self.reader.begin_segment(segno).map_err(wal_error)?;
        Ok(self.feeding)
    }

    /// The next bytes of the segment.
    pub fn data(&mut self, bytes: &[u8]) -> Result<(), PhysicalError> {
        if self.feeding {
            self.reader.feed(bytes).map_err(wal_error)?;
        }
        Ok(())
    }

    /// The segment has ended.
    pub fn segment_end(&mut self) -> Result<(), PhysicalError> {
        if std::mem::take(&mut self.feeding) {
            self.reader.end_segment().map_err(wal_error)?;
        }
        Ok(())
    }

    /// The backup ended at `end` on `end_timeline`: every record up to it must have been read.
    /// Returns how many were verified. A backup that ends on another timeline (a standby
    /// promoted during the backup) is checked only by the manifest's WAL ranges.
    pub fn finish(mut self, end: Lsn, end_timeline: u32) -> Result<u64, PhysicalError> {
        self.segment_end()?;
        if end_timeline != self.timeline {
            tracing::warn!(
                "the backup ended on timeline {end_timeline}, it began on {}: its WAL is not read record by record",
                self.timeline
            );
            return Ok(0);
        }
        let summary = self.reader.finish(end).map_err(wal_error)?;
        Ok(summary.records)
    }
}

fn wal_error(e: pg_wal::WalError) -> PhysicalError {
    PhysicalError::WalCheck(e.to_string())
}
