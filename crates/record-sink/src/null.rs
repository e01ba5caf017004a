//! A sink that keeps nothing and counts everything.

use bytes::Bytes;

use crate::{EntryKind, Flow, Record, RecordSink, SinkError, Wants};

/// What a [`NullSink`] saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NullSinkStats {
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Bytes of file bodies.
    pub bytes: u64,
    /// Whether [`RecordSink::finish`] was called.
    pub finished: bool,
    /// The reason given to [`RecordSink::abort`], if it was called.
    pub aborted: Option<String>,
}

/// A sink that discards every body and counts records and bytes: for benchmarks, dry runs and
/// tests of sources. It also checks that the source follows the record protocol.
#[derive(Debug, Default)]
pub struct NullSink {
    stats: NullSinkStats,
    in_file: bool,
}

impl NullSink {
    /// A new, empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// What the sink has seen so far.
    pub fn stats(&self) -> &NullSinkStats {
        &self.stats
    }
}

impl RecordSink for NullSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if self.in_file {
            return Err(SinkError::Protocol(format!("{record} announced before the previous file ended")));
        }
        match record.kind {
            EntryKind::File { .. } => {
                self.stats.files += 1;
                self.in_file = true;
            }
            EntryKind::Directory => self.stats.directories += 1,
            EntryKind::Symlink { .. } => self.stats.symlinks += 1,
        }
        Ok(Wants::Body)
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        if !self.in_file {
            return Err(SinkError::Protocol("data outside a file".into()));
        }
        self.stats.bytes += chunk.len() as u64;
        Ok(Flow::Continue)
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        if !self.in_file {
            return Err(SinkError::Protocol("end_file outside a file".into()));
        }
        self.in_file = false;
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.in_file {
            return Err(SinkError::Protocol("finish inside a file".into()));
        }
        self.stats.finished = true;
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.in_file = false;
        self.stats.aborted = Some(reason.to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::{Metadata, RecordPath};

    fn rec(path: &str, kind: EntryKind) -> Record {
        Record {
            path: RecordPath::new(path).unwrap(),
            kind,
            meta: Metadata::new(0o600, SystemTime::UNIX_EPOCH),
        }
    }

    #[tokio::test]
    async fn counts_records_and_bytes() {
        let mut sink = NullSink::new();
        sink.record(&rec("/data", EntryKind::Directory)).await.unwrap();
        assert_eq!(
            sink.record(&rec("/data/PG_VERSION", EntryKind::File { size: Some(3) })).await.unwrap(),
            Wants::Body
        );
        assert_eq!(sink.data(Bytes::from_static(b"18\n")).await.unwrap(), Flow::Continue);
        sink.end_file().await.unwrap();
        sink.record(&rec("/data/pg_tblspc/16384", EntryKind::Symlink { target: "/ts".into() }))
            .await
            .unwrap();
        sink.finish().await.unwrap();
        let s = sink.stats();
        assert_eq!((s.files, s.directories, s.symlinks, s.bytes, s.finished), (1, 1, 1, 3, true));
    }

    #[tokio::test]
    async fn rejects_protocol_violations() {
        let mut sink = NullSink::new();
        assert!(matches!(sink.data(Bytes::from_static(b"x")).await, Err(SinkError::Protocol(_))));
        sink.record(&rec("/a", EntryKind::File { size: None })).await.unwrap();
        assert!(matches!(sink.record(&rec("/b", EntryKind::Directory)).await, Err(SinkError::Protocol(_))));
        assert!(matches!(sink.finish().await, Err(SinkError::Protocol(_))));
        sink.abort("test").await.unwrap();
        assert_eq!(sink.stats().aborted.as_deref(), Some("test"));
    }
}
