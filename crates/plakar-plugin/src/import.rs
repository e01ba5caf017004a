//! The Import side: the project's [`RecordSink`] in front of Plakar's `Import` and `Open` RPCs.
//!
//! [`PlakarSink`] turns each [`Record`] into an `ImportResponse{record}` and learns what the
//! host wants from what it does next:
//!
//! - the host **opens** the record (`Open`): it wants the body, which then flows as
//!   `OpenResponse` chunks (non-empty, at most [`MAX_CHUNK`](crate::MAX_CHUNK) bytes); the
//!   end of the body ends the `Open` RPC with status OK;
//! - the host **acknowledges** the record without opening it (an `ImportRequest{result}`: a
//!   cache hit, a dry run, a directory): it does not want the body;
//! - the host **cancels** an `Open` part-way: [`RecordSink::data`] returns [`Flow::Stop`].
//!
//! Two ways to hand over a file's body, chosen per record:
//!
//! - **Buffered** (size known and at most [`ImportConfig::buffer_threshold`]): the sink answers
//!   [`Wants::Body`] at once, copies the body into memory, and [`RecordSink::end_file`] returns
//!   as soon as the body is complete. The host opens and acknowledges those records whenever its
//!   workers get to them, several at once, while the source's stream moves on. The bytes held
//!   this way are bounded by [`ImportConfig::buffer_budget`] (a record waits for room), and
//!   released when the host acknowledges the record.
//! - **Streamed** (everything else: large files, bodies of unknown size such as a `pg_dump`):
//!   [`RecordSink::record`] resolves when the host opens the record ([`Wants::Body`]) or
//!   acknowledges it without opening it ([`Wants::Skip`]); chunks go straight to the `Open`
//!   stream with HTTP/2 backpressure; [`RecordSink::end_file`] ends the stream and resolves on
//!   the host's acknowledgement. A source whose body is expensive to produce therefore starts
//!   producing it only when the host asked for it.
//!
//! Directories and symbolic links are sent and never waited for.
//!
//! [`RecordSink::finish`] sends `ImportResponse{finished}` exactly once;
//! [`RecordSink::abort`] ends `Import` with an error status instead, *before* `finished`,
//! which is what makes Plakar fail the backup (an error after `finished` is invisible to it).
//! After `finished` the RPC stays open, acknowledgements are read until the host half-closes
//! the stream, and buffered bodies are still served on `Open`; then `Import` ends with OK.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use record_sink::{EntryKind, Flow, Record, RecordSink, SinkError, Wants};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tonic::{Status, Streaming};

use crate::MAX_CHUNK;
use crate::mode;
use crate::proto::connectors;
use crate::proto::importer::{ImportRequest, ImportResponse, OpenResponse};

/// Tuning of the Import side.
#[derive(Clone, Debug)]
pub struct ImportConfig {
    /// Files whose announced size is at most this many bytes are buffered (see the module docs).
    pub buffer_threshold: u64,
    /// The most bytes of buffered bodies held at once (plus 1 KiB of bookkeeping per record).
    pub buffer_budget: usize,
}

impl Default for ImportConfig {
    /// 1 MiB files, 32 MiB in all (the figures behind this choice are in `docs/benchmarks.md`).
    fn default() -> Self {
        Self { buffer_threshold: 1 << 20, buffer_budget: 32 << 20 }
    }
}

impl ImportConfig {
    /// The configuration from the environment: `PLAKAR_PG_BUFFER_THRESHOLD` and
    /// `PLAKAR_PG_BUFFER_BUDGET` (bytes) override the defaults; a threshold of 0 turns buffering
    /// off (every file streamed one at a time).
    pub fn from_env() -> Self {
        let mut cfg = Self::default();
        if let Some(v) = std::env::var("PLAKAR_PG_BUFFER_THRESHOLD").ok().and_then(|v| v.parse().ok()) {
            cfg.buffer_threshold = v;
        }
        if let Some(v) = std::env::var("PLAKAR_PG_BUFFER_BUDGET").ok().and_then(|v| v.parse().ok()) {
            cfg.buffer_budget = v;
        }
        cfg
    }

    fn units(&self) -> usize {
        (self.buffer_budget / 1024).max(1)
    }
}

const UNIT: u64 = 1024;

/// How the host names a pending record: `Open` requests and acknowledgements carry these fields.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    pathname: String,
    is_xattr: bool,
    xattr_name: String,
    xattr_type: i32,
}

impl Key {
    fn of(r: &connectors::Record) -> Self {
        Self {
            pathname: r.pathname.clone(),
            is_xattr: r.is_xattr,
            xattr_name: r.xattr_name.clone(),
            xattr_type: r.xattr_type,
        }
    }
}

type ChunkTx = mpsc::Sender<Result<OpenResponse, Status>>;

#[derive(Clone, Debug)]
enum Buffered {
    Filling,
    Done(Bytes),
    Failed(String),
}

enum BodySlot {
    /// A directory or symlink: nothing to open.
    None,
    /// A streamed file waiting for its `Open`.
    Await(oneshot::Sender<ChunkTx>),
    /// A buffered file.
    Buffer(watch::Receiver<Buffered>),
    /// Already opened.
    Taken,
}

struct Entry {
    ack: Option<oneshot::Sender<()>>,
    body: BodySlot,
    _permit: Option<OwnedSemaphorePermit>,
}

/// State shared by the sink, the `Import` acknowledgement reader and the `Open` handler.
pub(crate) struct Hub {
    entries: Mutex<Option<HashMap<Key, Entry>>>,
    budget: Arc<Semaphore>,
    cfg: ImportConfig,
    finished: AtomicBool,
}

impl Hub {
    pub(crate) fn new(cfg: ImportConfig) -> Arc<Self> {
        Arc::new(Self {
            entries: Mutex::new(Some(HashMap::new())),
            budget: Arc::new(Semaphore::new(cfg.units())),
            cfg,
            finished: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<Key, Entry>>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(&self, key: Key, entry: Entry) -> Result<(), SinkError> {
        let mut g = self.lock();
        let Some(map) = g.as_mut() else {
            return Err(SinkError::Closed("the import was cancelled".into()));
        };
        if map.contains_key(&key) {
            return Err(SinkError::Protocol(format!(
                "{}: a record with this path is still pending",
                key.pathname
            )));
        }
        map.insert(key, entry);
        Ok(())
    }

    fn unregister(&self, key: &Key) {
        if let Some(map) = self.lock().as_mut() {
            map.remove(key);
        }
    }

    /// An acknowledgement arrived for `key`.
    fn ack(&self, key: &Key) {
        let entry = self.lock().as_mut().and_then(|m| m.remove(key));
        match entry {
            Some(mut e) => {
                if let Some(tx) = e.ack.take() {
                    let _ = tx.send(());
                }
                drop(e);
            }
            None => tracing::warn!(path = %key.pathname, "acknowledgement for a record that is not pending"),
        }
    }

    /// Drops every pending record: waiting sinks and `Open`s fail, buffered bodies are freed.
    pub(crate) fn close(&self) {
        let map = self.lock().take();
        drop(map);
        self.budget.close();
    }

    /// Serves `Open` for `record`.
    pub(crate) fn open(&self, record: &connectors::Record) -> Result<OpenStream, Status> {
        let key = Key::of(record);
        let slot = {
            let mut g = self.lock();
            let Some(map) = g.as_mut() else {
                return Err(Status::unavailable("the import is over"));
            };
            match map.get_mut(&key) {
                Some(e) => std::mem::replace(&mut e.body, BodySlot::Taken),
                None => return Err(Status::not_found(format!("{}: file does not exist", key.pathname))),
            }
        };
        match slot {
            BodySlot::Await(tx) => {
                let (ctx, crx) = mpsc::channel(2);
                if tx.send(ctx).is_err() {
                    return Err(Status::unavailable(format!("{}: the backup stopped", key.pathname)));
                }
                Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(crx)))
            }
            BodySlot::Buffer(rx) => Ok(buffered_stream(rx, key.pathname)),
            BodySlot::None => Err(Status::not_found(format!("{}: not a regular file", key.pathname))),
            BodySlot::Taken => {
                Err(Status::not_found(format!("{}: file does not exist (opened twice)", key.pathname)))
            }
        }
    }
}

/// The stream of an `Open` response.
pub(crate) type OpenStream = Pin<Box<dyn Stream<Item = Result<OpenResponse, Status>> + Send>>;

fn buffered_stream(mut rx: watch::Receiver<Buffered>, path: String) -> OpenStream {
    let s = futures_util::stream::once(async move {
        let state = match rx.wait_for(|b| !matches!(b, Buffered::Filling)).await {
            Ok(b) => b.clone(),
            Err(_) => Buffered::Failed("the backup stopped".into()),
        };
        match state {
            Buffered::Done(bytes) => Ok(bytes),
            Buffered::Failed(why) => Err(Status::aborted(format!("{path}: {why}"))),
            Buffered::Filling => unreachable!("waited for a final state"),
        }
    });
    Box::pin(futures_util::StreamExt::flat_map(s, |r| {
        let items: Vec<Result<OpenResponse, Status>> = match r {
            Ok(bytes) => split(bytes).map(|chunk| Ok(OpenResponse { chunk })).collect(),
            Err(e) => vec![Err(e)],
        };
        futures_util::stream::iter(items)
    }))
}

/// Splits a body into non-empty pieces of at most [`MAX_CHUNK`] bytes (none for an empty one).
fn split(mut bytes: Bytes) -> impl Iterator<Item = Bytes> {
    std::iter::from_fn(move || {
        if bytes.is_empty() {
            None
        } else {
            let n = bytes.len().min(MAX_CHUNK);
            Some(bytes.split_to(n))
        }
    })
}

enum Current {
    None,
    Streaming { key: Key, tx: Option<ChunkTx>, ack: oneshot::Receiver<()> },
    Skipped { ack: oneshot::Receiver<()> },
    Buffering { key: Key, buf: BytesMut, limit: usize, tx: watch::Sender<Buffered> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    Finished,
    Aborted,
}

/// Counters of what went through a [`PlakarSink`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Records sent.
    pub records: u64,
    /// File records whose body was buffered.
    pub buffered: u64,
    /// File records whose body was streamed.
    pub streamed: u64,
    /// File records the host acknowledged without opening (streamed ones) or stopped reading.
    pub skipped: u64,
    /// Body bytes handed to the host.
    pub bytes: u64,
}

/// A [`RecordSink`] that feeds Plakar's `Import` RPC. Built by the runtime when the host calls
/// `Import` and handed to the [`ImportJob`](crate::ImportJob).
pub struct PlakarSink {
    hub: Arc<Hub>,
    out: Option<mpsc::Sender<ImportResponse>>,
    fail: Option<oneshot::Sender<Status>>,
    current: Current,
    phase: Phase,
    stats: SinkStats,
}

impl PlakarSink {
    /// What went through the sink so far.
    pub fn stats(&self) -> &SinkStats {
        &self.stats
    }

    /// Whether [`RecordSink::finish`] or [`RecordSink::abort`] was called.
    pub fn ended(&self) -> bool {
        self.phase != Phase::Running
    }

    async fn send(&mut self, msg: ImportResponse) -> Result<(), SinkError> {
        let Some(out) = &self.out else {
            return Err(SinkError::Protocol("record after the end of the import".into()));
        };
        out.send(msg).await.map_err(|_| SinkError::Closed("Plakar closed the Import stream".into()))
    }

    fn check_running(&self, what: &str) -> Result<(), SinkError> {
        match (self.phase, &self.current) {
            (Phase::Running, Current::None) => Ok(()),
            (Phase::Running, _) => Err(SinkError::Protocol(format!("{what} before the previous file ended"))),
            _ => Err(SinkError::Protocol(format!("{what} after the end of the import"))),
        }
    }
}

/// Builds the Go `FileInfo` and proto record of a [`Record`].
pub fn record_to_proto(record: &Record) -> connectors::Record {
    let (type_bits, size, target) = match &record.kind {
        EntryKind::File { size } => (0, size.map_or(0, |s| s as i64), String::new()),
        EntryKind::Directory => (mode::MODE_DIR, 0, String::new()),
        EntryKind::Symlink { target } => (mode::MODE_SYMLINK, target.len() as i64, target.clone()),
    };
    let path = record.path.as_str();
    let name = if path == "/" { "/".to_owned() } else { record.path.file_name().to_owned() };
    let meta = &record.meta;
    let is_file = matches!(record.kind, EntryKind::File { .. });
    connectors::Record {
        has_reader: is_file,
        pathname: path.to_owned(),
        target,
        file_info: Some(connectors::FileInfo {
            name,
            size,
            mode: type_bits | mode::from_posix_perm(meta.mode),
            mod_time: Some(timestamp(meta.mtime)),
            dev: meta.dev.unwrap_or(0),
            ino: meta.ino.unwrap_or(0),
            uid: meta.uid.map_or(0, u64::from),
            gid: meta.gid.map_or(0, u64::from),
            nlink: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A protobuf timestamp for `t` (times before 1970 included).
pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => prost_types::Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 },
        Err(e) => {
            let d = e.duration();
            let mut seconds = -(d.as_secs() as i64);
            let mut nanos = -(d.subsec_nanos() as i32);
            if nanos < 0 {
                seconds -= 1;
                nanos += 1_000_000_000;
            }
            prost_types::Timestamp { seconds, nanos }
        }
    }
}

impl RecordSink for PlakarSink {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        self.check_running("a record")?;
        let proto = record_to_proto(record);
        let key = Key::of(&proto);
        let msg = ImportResponse { record: Some(proto), finished: false };
        self.stats.records += 1;
        match record.kind {
            EntryKind::Directory | EntryKind::Symlink { .. } => {
                self.hub.register(key, Entry { ack: None, body: BodySlot::None, _permit: None })?;
                self.send(msg).await?;
                Ok(Wants::Body)
            }
            EntryKind::File { size: Some(size) } if size <= self.hub.cfg.buffer_threshold => {
                let units = (size.div_ceil(UNIT) + 1).min(self.hub.cfg.units() as u64) as u32;
                let permit = Arc::clone(&self.hub.budget)
                    .acquire_many_owned(units)
                    .await
                    .map_err(|_| SinkError::Closed("the import was cancelled".into()))?;
                let (tx, rx) = watch::channel(Buffered::Filling);
                self.hub.register(
                    key.clone(),
                    Entry { ack: None, body: BodySlot::Buffer(rx), _permit: Some(permit) },
                )?;
                self.send(msg).await?;
                self.stats.buffered += 1;
                let limit = size as usize;
                self.current = Current::Buffering { key, buf: BytesMut::with_capacity(limit), limit, tx };
                Ok(Wants::Body)
            }
            EntryKind::File { .. } => {
                let (open_tx, open_rx) = oneshot::channel();
                let (ack_tx, mut ack_rx) = oneshot::channel();
                self.hub.register(
                    key.clone(),
                    Entry { ack: Some(ack_tx), body: BodySlot::Await(open_tx), _permit: None },
                )?;
                self.send(msg).await?;
                match open_rx.await {
                    Ok(tx) => {
                        self.stats.streamed += 1;
                        self.current = Current::Streaming { key, tx: Some(tx), ack: ack_rx };
                        Ok(Wants::Body)
                    }
                    // The entry went away: acknowledged without an Open, or the import ended.
                    Err(_) => match ack_rx.try_recv() {
                        Ok(()) => {
                            self.stats.skipped += 1;
                            self.current = Current::Skipped { ack: ack_rx };
                            Ok(Wants::Skip)
                        }
                        Err(_) => {
                            ack_rx.close();
                            Err(SinkError::Closed(format!("{}: the import was cancelled", key.pathname)))
                        }
                    },
                }
            }
        }
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        match &mut self.current {
            Current::Streaming { tx, .. } => {
                let Some(sender) = tx else { return Ok(Flow::Stop) };
                for piece in split(chunk) {
                    let n = piece.len() as u64;
                    if sender.send(Ok(OpenResponse { chunk: piece })).await.is_err() {
                        // The host cancelled the Open stream.
                        *tx = None;
                        self.stats.skipped += 1;
                        return Ok(Flow::Stop);
                    }
                    self.stats.bytes += n;
                }
                Ok(Flow::Continue)
            }
            Current::Buffering { key, buf, limit, tx } => {
                if tx.is_closed() {
                    // Acknowledged without an Open (a cache hit): nobody will read it.
                    return Ok(Flow::Stop);
                }
                if buf.len() + chunk.len() > *limit {
                    return Err(SinkError::Protocol(format!(
                        "{}: more than the announced {} bytes",
                        key.pathname, limit
                    )));
                }
                buf.extend_from_slice(&chunk);
                Ok(Flow::Continue)
            }
            Current::Skipped { .. } => Ok(Flow::Stop),
            Current::None => Err(SinkError::Protocol("data outside a file".into())),
        }
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Streaming { key, tx, ack } => {
                drop(tx); // ends the Open stream with OK
                ack.await
                    .map_err(|_| SinkError::Closed(format!("{}: the import was cancelled", key.pathname)))
            }
            Current::Skipped { ack } => {
                drop(ack);
                Ok(())
            }
            Current::Buffering { key, buf, limit, tx } => {
                if tx.is_closed() {
                    self.stats.skipped += 1;
                    return Ok(());
                }
                if buf.len() != limit {
                    // Short body: the source's bug; the record is pending with a wrong size.
                    self.hub.unregister(&key);
                    return Err(SinkError::Protocol(format!(
                        "{}: {} bytes of the announced {}",
                        key.pathname,
                        buf.len(),
                        limit
                    )));
                }
                self.stats.bytes += buf.len() as u64;
                let _ = tx.send(Buffered::Done(buf.freeze()));
                Ok(())
            }
            Current::None => Err(SinkError::Protocol("end_file outside a file".into())),
        }
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.check_running("finish")?;
        self.hub.finished.store(true, Ordering::SeqCst);
        self.send(ImportResponse { record: None, finished: true }).await?;
        self.out = None;
        self.fail = None;
        self.phase = Phase::Finished;
        tracing::debug!(stats = ?self.stats, "import finished");
        Ok(())
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        self.phase = Phase::Aborted;
        let status = Status::aborted(reason.to_owned());
        match std::mem::replace(&mut self.current, Current::None) {
            Current::Streaming { tx: Some(tx), .. } => {
                let status = status.clone();
                tokio::spawn(async move {
                    let _ =
                        tokio::time::timeout(std::time::Duration::from_secs(5), tx.send(Err(status))).await;
                });
            }
            Current::Buffering { tx, .. } => {
                let _ = tx.send(Buffered::Failed(reason.to_owned()));
            }
            _ => {}
        }
        if let Some(fail) = self.fail.take() {
            let _ = fail.send(status);
        }
        self.out = None;
        self.hub.close();
        tracing::debug!(reason, "import aborted");
        Ok(())
    }
}

/// The response stream of `Import`.
pub(crate) type ImportStream = Pin<Box<dyn Stream<Item = Result<ImportResponse, Status>> + Send>>;

/// Builds the sink, the `Import` response stream, and starts reading acknowledgements from
/// `requests`. `cancel` is triggered if the host resets the stream or half-closes it before
/// `finished`.
pub(crate) fn start(
    hub: Arc<Hub>,
    mut requests: Streaming<ImportRequest>,
    cancel: CancellationToken,
) -> (PlakarSink, ImportStream) {
    let (out_tx, out_rx) = mpsc::channel(64);
    let (fail_tx, fail_rx) = oneshot::channel();
    let (eof_tx, eof_rx) = oneshot::channel::<()>();
    let reader_hub = Arc::clone(&hub);
    tokio::spawn(async move {
        loop {
            match requests.message().await {
                Ok(Some(req)) => match req.result.and_then(|r| r.header) {
                    Some(header) => reader_hub.ack(&Key::of(&header)),
                    None => tracing::warn!("acknowledgement without a record header"),
                },
                Ok(None) => {
                    if !reader_hub.finished.load(Ordering::SeqCst) {
                        tracing::warn!(
                            "the host half-closed Import before the backup finished: cancelling it"
                        );
                        cancel.cancel();
                    }
                    tracing::debug!("the host half-closed Import");
                    let _ = eof_tx.send(());
                    break;
                }
                Err(status) => {
                    tracing::debug!(%status, "Import request stream failed");
                    cancel.cancel();
                    break;
                }
            }
        }
    });
    let sink = PlakarSink {
        hub,
        out: Some(out_tx),
        fail: Some(fail_tx),
        current: Current::None,
        phase: Phase::Running,
        stats: SinkStats::default(),
    };
    struct Out {
        rx: mpsc::Receiver<ImportResponse>,
        rx_done: bool,
        fail: Option<oneshot::Receiver<Status>>,
        eof: Option<oneshot::Receiver<()>>,
        done: bool,
    }
    let state = Out { rx: out_rx, rx_done: false, fail: Some(fail_rx), eof: Some(eof_rx), done: false };
    // Records until the sink lets go of its sender (finish or abort); an abort's status wins
    // over anything still queued; after the last record, stay open until the host half-closes.
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if s.done {
                return None;
            }
            let Out { rx, rx_done, fail, eof, .. } = &mut s;
            tokio::select! {
                biased;
                r = async { fail.as_mut().expect("guarded").await }, if fail.is_some() => {
                    s.fail = None;
                    if let Ok(status) = r {
                        s.done = true;
                        return Some((Err(status), s));
                    }
                }
                m = rx.recv(), if !*rx_done => match m {
                    Some(m) => return Some((Ok(m), s)),
                    None => s.rx_done = true,
                },
                _ = async { eof.as_mut().expect("guarded").await }, if *rx_done && fail.is_none() && eof.is_some() => {
                    return None;
                }
                else => return None,
            }
        }
    });
    (sink, Box::pin(stream))
}
