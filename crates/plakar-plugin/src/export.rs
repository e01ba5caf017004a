//! The Export side: Plakar's `Export` stream as a sequence of entries with bodies.
//!
//! The host sends, strictly in order, one `ExportRequest{record}` per snapshot entry (pre-order,
//! children sorted by name, the selected directory as `/`), each regular file followed by its
//! body in chunks of at most 1 MiB and one **empty** chunk that marks its end. It does not wait
//! for results between records: flow control is HTTP/2 backpressure, so a body must be consumed
//! before the next record can be seen.
//!
//! [`ExportEntries::next`] yields each entry; [`ExportEntries::chunk`] reads the current entry's
//! body (`None` at the end marker). A body that ends without the marker (the host hit a read
//! error and half-closed) is [`ExportError::Truncated`]: never commit such a file. Each entry gets
//! exactly one result, with the received record echoed as its header: [`ExportEntries::fail`]
//! sets an error for the current entry, otherwise it is answered OK when the next entry is
//! requested (or at the end). A body not read by the consumer is drained and discarded.

use std::pin::Pin;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use crate::mode::{self, GoKind};
use crate::proto::connectors;
use crate::proto::exporter::{ExportRequest, ExportResponse, export_request::Packet};

/// Why reading the Export stream failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The stream ended in the middle of a file's body (no end marker).
    #[error("{0}: the file's content ended before its end marker (a read error on Plakar's side)")]
    Truncated(String),
    /// The host sent something the protocol does not allow here.
    #[error("Export stream: {0}")]
    Protocol(String),
    /// The stream failed (the host cancelled the restore, the connection broke).
    #[error("Export stream failed: {0}")]
    Transport(String),
}

/// One entry of the snapshot being restored.
#[derive(Clone, Debug)]
pub struct ExportEntry {
    /// The record as received (echoed as the result's header).
    pub record: connectors::Record,
}

impl ExportEntry {
    /// The path relative to the restore target (`/` is the target itself).
    pub fn path(&self) -> &str {
        &self.record.pathname
    }

    /// What kind of entry this is, from its Go mode.
    pub fn kind(&self) -> GoKind {
        self.record.file_info.as_ref().map_or(GoKind::Other, |fi| mode::kind(fi.mode))
    }

    /// Whether a body follows (regular files and xattrs).
    pub fn has_body(&self) -> bool {
        self.record.has_reader
    }

    /// POSIX permission bits (`0o7777`).
    pub fn perm(&self) -> u32 {
        self.record.file_info.as_ref().map_or(0, |fi| mode::to_posix_perm(fi.mode))
    }

    /// The size the snapshot recorded.
    pub fn size(&self) -> Option<u64> {
        self.record.file_info.as_ref().and_then(|fi| u64::try_from(fi.size).ok())
    }

    /// The modification time (the epoch if unset; Go's zero time is year 1).
    pub fn mtime(&self) -> SystemTime {
        let ts = self.record.file_info.as_ref().and_then(|fi| fi.mod_time).unwrap_or_default();
        let nanos = Duration::from_nanos(ts.nanos.clamp(0, 999_999_999) as u64);
        if ts.seconds >= 0 {
            UNIX_EPOCH + Duration::from_secs(ts.seconds as u64) + nanos
        } else {
            UNIX_EPOCH - Duration::from_secs(ts.seconds.unsigned_abs()) + nanos
        }
    }
}

/// The Export stream, for an [`ExportJob`](crate::ExportJob).
pub struct ExportEntries {
    requests: Streaming<ExportRequest>,
    results: mpsc::Sender<Result<ExportResponse, Status>>,
    current: Option<Current>,
    ended: bool,
}

struct Current {
    entry: ExportEntry,
    error: Option<String>,
    body_left: bool,
}

/// The response stream of `Export`.
pub(crate) type ExportStream = Pin<Box<dyn Stream<Item = Result<ExportResponse, Status>> + Send>>;

impl ExportEntries {
    pub(crate) fn new(
        requests: Streaming<ExportRequest>,
    ) -> (Self, mpsc::Receiver<Result<ExportResponse, Status>>) {
        let (tx, rx) = mpsc::channel(64);
        (Self { requests, results: tx, current: None, ended: false }, rx)
    }

    async fn recv(&mut self) -> Result<Option<Packet>, ExportError> {
        match self.requests.message().await {
            Ok(Some(req)) => match req.packet {
                Some(p) => Ok(Some(p)),
                None => Err(ExportError::Protocol("a request with neither a record nor a chunk".into())),
            },
            Ok(None) => Ok(None),
            Err(status) => Err(ExportError::Transport(status.message().to_owned())),
        }
    }

    async fn answer_current(&mut self) -> Result<(), ExportError> {
        if let Some(cur) = self.current.take() {
            let result =
                connectors::Result { header: Some(cur.entry.record), error: cur.error.unwrap_or_default() };
            self.results
                .send(Ok(ExportResponse { result: Some(result) }))
                .await
                .map_err(|_| ExportError::Transport("Plakar closed the Export stream".into()))?;
        }
        Ok(())
    }

    /// The next entry, or `None` once the host has sent everything (half-closed the stream).
    /// Answers the previous entry (OK unless [`fail`](Self::fail) was called) and discards what
    /// was left of its body.
    pub async fn next(&mut self) -> Result<Option<ExportEntry>, ExportError> {
        while self.current.as_ref().is_some_and(|c| c.body_left) {
            self.chunk().await?;
        }
        self.answer_current().await?;
        if self.ended {
            return Ok(None);
        }
        match self.recv().await? {
            None => {
                self.ended = true;
                Ok(None)
            }
            Some(Packet::Record(record)) => {
                if record.file_info.is_none() && record.error.is_empty() && !record.is_xattr {
                    return Err(ExportError::Protocol(format!(
                        "{}: a record without file info",
                        record.pathname
                    )));
                }
                let entry = ExportEntry { record };
                self.current =
                    Some(Current { body_left: entry.has_body(), entry: entry.clone(), error: None });
                Ok(Some(entry))
            }
            Some(Packet::Chunk(_)) => Err(ExportError::Protocol("file content outside a file".into())),
        }
    }

    /// The next piece of the current entry's body; `None` at its end marker (and after).
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, ExportError> {
        let path = match &self.current {
            Some(c) if c.body_left => c.entry.record.pathname.clone(),
            _ => return Ok(None),
        };
        match self.recv().await? {
            Some(Packet::Chunk(c)) if c.is_empty() => {
                if let Some(cur) = self.current.as_mut() {
                    cur.body_left = false;
                }
                Ok(None)
            }
            Some(Packet::Chunk(c)) => Ok(Some(c)),
            Some(Packet::Record(r)) => {
                Err(ExportError::Protocol(format!("{}: a record before the end of {path}", r.pathname)))
            }
            None => {
                self.ended = true;
                if let Some(cur) = self.current.as_mut() {
                    cur.body_left = false;
                    cur.error = Some("content truncated".into());
                }
                Err(ExportError::Truncated(path))
            }
        }
    }

    /// Marks the current entry as failed: its result carries `error` (Plakar prints `KO path:
    /// error` and counts it, but only an error from the whole job fails the restore).
    pub fn fail(&mut self, error: impl Into<String>) {
        if let Some(cur) = self.current.as_mut() {
            cur.error = Some(error.into());
        }
    }

    /// Reads the rest of the stream after the job is done: the current entry keeps its answer,
    /// every later one is answered with `error` (or OK if `None`), and the stream is read to the host's half-close, as the
    /// host requires before the RPC ends.
    pub(crate) async fn drain(&mut self, error: Option<&str>) -> Result<(), ExportError> {
        loop {
            if self.next().await?.is_none() {
                return Ok(());
            }
            if let Some(e) = error {
                self.fail(e);
            }
        }
    }

    /// Sends the final status (an error fails the restore).
    pub(crate) async fn end(&mut self, status: Option<Status>) {
        if let Some(s) = status {
            let _ = self.results.send(Err(s)).await;
        }
    }
}
