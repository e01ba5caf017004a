//! Stream mode: WAL received on a second replication connection while the base backup runs
//! (`pg_basebackup -X stream`), spooled on disk, and handed to the sink after the archives.
//!
//! Sequence (protocol-replication.html; `receivelog.c`): `CREATE_REPLICATION_SLOT … TEMPORARY
//! PHYSICAL RESERVE_WAL` so nothing is recycled before we read it, `IDENTIFY_SYSTEM` (the system
//! must be the backup's), `START_REPLICATION SLOT … <start segment> TIMELINE <tli>`, then
//! `XLogData` into the spool with a standby status update at least every 10 seconds and at once
//! when a keepalive asks for it, until the received position reaches the backup's end LSN.

use std::time::{Duration, Instant, SystemTime};

use pg_config::{Config, Replication};
use pg_conn::Client;
use pg_wire::message::BackendMessage;
use pg_wire::replication::{Lsn, PgTimestamp, ReplicationMessage, StandbyStatusUpdate};
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, Wants};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PhysicalError;
use crate::source::{RunOptions, ServerFacts, slot_name};
use crate::wal::WalSpool;

/// How often a standby status update is sent when nothing asks for one.
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// The WAL receiver task of one backup.
#[derive(Debug)]
pub(crate) struct Streamer {
    end: watch::Sender<Option<u64>>,
    /// The receiver task, until it has been awaited.
    task: Option<JoinHandle<Result<WalSpool, PhysicalError>>>,
    /// Its spool, once it has ended successfully.
    done: Option<WalSpool>,
}

impl Drop for Streamer {
    fn drop(&mut self) {
        // Never leave a receiver (its connection, slot and spool) running on its own.
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> PhysicalError {
    PhysicalError::Internal(format!("the WAL receiver task failed: {e}"))
}

impl Streamer {
    /// Opens the second connection and starts receiving from `start` on `timeline`.
    pub(crate) async fn start(
        config: &Config,
        server: &ServerFacts,
        start: u64,
        timeline: u32,
        run: &RunOptions,
    ) -> Result<Self, PhysicalError> {
        let mut config = config.clone();
        config.set_replication(Replication::Physical);
        let mut client = Client::connect(&config).await.map_err(failed_to("connecting"))?;
        let slot = slot_name("wal");
        client
            .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} TEMPORARY PHYSICAL RESERVE_WAL"))
            .await
            .map_err(failed_to("creating its temporary slot"))?;
        let rows = client.simple_query("IDENTIFY_SYSTEM").await.map_err(failed_to("IDENTIFY_SYSTEM"))?;
        let sysid = rows.first().and_then(|r| r.get(0)).unwrap_or_default();
        if sysid != server.system_identifier {
            return Err(PhysicalError::Stream(format!(
                "the WAL connection reached system {sysid}, the backup connection system {}",
                server.system_identifier
            )));
        }
        let spool = WalSpool::new(run.spool_dir.as_deref(), server.wal_segment_size, timeline, start)
            .map_err(|e| PhysicalError::Stream(format!("cannot create the WAL spool: {e}")))?;
        let from = spool.start_position();
        let command = format!(
            "START_REPLICATION SLOT {slot} PHYSICAL {:X}/{:X} TIMELINE {timeline}",
            from >> 32,
            from & 0xffff_ffff
        );
        client.send_query(&command).await.map_err(failed_to("sending START_REPLICATION"))?;
        let (end, end_rx) = watch::channel(None);
        let task = tokio::spawn(receive(client, spool, end_rx));
        Ok(Self { end, task: Some(task), done: None })
    }

    /// Resolves only if the receiver fails (a dropped connection, a server error): the backup
    /// must then fail at once rather than at its end. Cancel-safe.
    pub(crate) async fn failed(&mut self) -> PhysicalError {
        if let Some(task) = &mut self.task {
            let result = task.await;
            self.task = None;
            match result.map_err(join_error) {
                Ok(Ok(spool)) => self.done = Some(spool),
                Ok(Err(e)) | Err(e) => return e,
            }
        }
        std::future::pending().await
    }

    /// Stops the receiver and waits until it is gone: its connection is closed (the server
    /// drops its temporary slot) and its spool directory removed.
    pub(crate) async fn cancel(mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
        self.done = None;
    }

    /// The backup ended at `lsn`: stop once everything before it has been received.
    pub(crate) fn stop_at(&self, lsn: u64) {
        let _ = self.end.send(Some(lsn));
    }

    /// Waits for the receiver, then writes every segment as `/data/pg_wal/<segment>` (plus its
    /// `archive_status/<segment>.done`) into the sink. Returns the number of segments.
    pub(crate) async fn finish_into<S: RecordSink>(mut self, sink: &mut S) -> Result<usize, PhysicalError> {
        let mut spool = match (self.done.take(), self.task.take()) {
            (Some(spool), _) => spool,
            (None, Some(task)) => task.await.map_err(join_error)??,
            (None, None) => return Err(PhysicalError::internal("the WAL receiver already failed")),
        };
        let segments = spool.finish()?;
        let now = SystemTime::now();
        for (name, path) in &segments {
            let meta = Metadata::new(0o600, now);
            let size = spool.segment_size();
            let record = Record {
                path: RecordPath::new(format!("/data/pg_wal/{name}")).expect("valid"),
                kind: EntryKind::File { size: Some(size) },
                meta: meta.clone(),
            };
            if sink.record(&record).await? == Wants::Body {
                let mut file = tokio::fs::File::open(path)
                    .await
                    .map_err(|e| PhysicalError::Stream(format!("WAL spool {}: {e}", path.display())))?;
                let mut sent = 0u64;
                loop {
                    let mut buf = bytes::BytesMut::with_capacity(1 << 20);
                    let n = tokio::io::AsyncReadExt::read_buf(&mut file, &mut buf)
                        .await
                        .map_err(|e| PhysicalError::Stream(format!("WAL spool {}: {e}", path.display())))?;
                    if n == 0 {
                        break;
                    }
                    sent += n as u64;
                    if sink.data(buf.freeze()).await? == Flow::Stop {
                        // The consumer wants no more of it; the spool's copy was complete.
                        sent = size;
                        break;
                    }
                }
                if sent != size {
                    return Err(PhysicalError::Stream(format!(
                        "WAL segment {name}: {sent} bytes in the spool"
                    )));
                }
            }
            sink.end_file().await?;
            spool.remove(name).ok();
            let done = Record {
                path: RecordPath::new(format!("/data/pg_wal/archive_status/{name}.done")).expect("valid"),
                kind: EntryKind::File { size: Some(0) },
                meta,
            };
            sink.record(&done).await?;
            sink.end_file().await?;
        }
        Ok(segments.len())
    }
}

/// A standby status update confirming `position` as written and flushed (we hold a slot, so
/// confirming advances it, as pg_basebackup does), nothing applied.
async fn send_status(client: &mut Client, position: u64) -> Result<(), PhysicalError> {
    let update = StandbyStatusUpdate {
        write: Lsn(position),
        flush: Lsn(position),
        apply: Lsn::INVALID,
        client_time: PgTimestamp::from_system_time(SystemTime::now()),
        reply_requested: false,
    };
    client.send_encoded(|out| update.encode(out)).await.map_err(|e| lost(e, position))
}

fn lsn_text(v: u64) -> String {
    format!("{:X}/{:X}", v >> 32, v & 0xffff_ffff)
}

/// The WAL connection failed: say which connection, and how far it had got.
fn lost(e: pg_conn::Error, position: u64) -> PhysicalError {
    PhysicalError::WalConnection { at: format!("at {}", lsn_text(position)), source: Box::new(e) }
}

/// The WAL connection failed while `doing` something before streaming.
fn failed_to(doing: &'static str) -> impl FnOnce(pg_conn::Error) -> PhysicalError {
    move |source| PhysicalError::WalConnection { at: doing.to_owned(), source: Box::new(source) }
}

async fn receive(
    mut client: Client,
    mut spool: WalSpool,
    mut end: watch::Receiver<Option<u64>>,
) -> Result<WalSpool, PhysicalError> {
    // CopyBothResponse first (an error, e.g. a removed segment, may follow it).
    loop {
        let frame = client.read_frame().await.map_err(|e| lost(e, spool.position()))?;
        match BackendMessage::parse(frame).map_err(|e| PhysicalError::Stream(e.to_string()))? {
            BackendMessage::CopyBothResponse(_) => break,
            BackendMessage::NoticeResponse(n) => tracing::warn!("WAL stream: {n}"),
            BackendMessage::ErrorResponse(e) => {
                return Err(PhysicalError::Stream(format!("START_REPLICATION failed: {e}")));
            }
            other => {
                return Err(PhysicalError::Stream(format!(
                    "unexpected {} before the WAL stream",
                    other.name()
                )));
            }
        }
    }
    let mut last_status = Instant::now();
    loop {
        let reached = end.borrow().is_some_and(|e| spool.position() >= e);
        if reached {
            send_status(&mut client, spool.position()).await?;
            client.send_copy_done().await.map_err(|e| lost(e, spool.position()))?;
            break;
        }
        if last_status.elapsed() >= STATUS_INTERVAL {
            send_status(&mut client, spool.position()).await?;
            last_status = Instant::now();
        }
        let frame = tokio::select! {
            frame = client.read_frame() => frame.map_err(|e| lost(e, spool.position()))?,
            changed = end.changed() => {
                if changed.is_err() {
                    return Err(PhysicalError::Internal("the backup stopped waiting for its WAL".into()));
                }
                continue;
            }
            () = tokio::time::sleep(STATUS_INTERVAL) => continue,
        };
        match BackendMessage::parse(frame).map_err(|e| PhysicalError::Stream(e.to_string()))? {
            BackendMessage::CopyData(body) => {
                match ReplicationMessage::parse(body)
                    .map_err(|e| PhysicalError::Stream(format!("WAL stream: {e}")))?
                {
                    ReplicationMessage::XLogData(x) => spool.write(x.wal_start.0, &x.data)?,
                    ReplicationMessage::PrimaryKeepalive(k) if k.reply_requested => {
                        send_status(&mut client, spool.position()).await?;
                        last_status = Instant::now();
                    }
                    ReplicationMessage::PrimaryKeepalive(_) => {}
                }
            }
            BackendMessage::NoticeResponse(n) => tracing::warn!("WAL stream: {n}"),
            BackendMessage::ErrorResponse(e) => {
                return Err(PhysicalError::Stream(format!(
                    "WAL streaming connection, at {}: {e}",
                    lsn_text(spool.position())
                )));
            }
            BackendMessage::CopyDone => {
                return Err(PhysicalError::Stream(
                    "the server ended the WAL stream before the backup's end (timeline switch?)".into(),
                ));
            }
            other => {
                return Err(PhysicalError::Stream(format!("unexpected {} in the WAL stream", other.name())));
            }
        }
    }
    // Drain to ReadyForQuery: the server may still send keepalives, its CopyDone and the
    // command completions. The temporary slot dies with the connection.
    loop {
        let frame = client.read_frame().await.map_err(|e| lost(e, spool.position()))?;
        match BackendMessage::parse(frame).map_err(|e| PhysicalError::Stream(e.to_string()))? {
            BackendMessage::ReadyForQuery(_) => break,
            BackendMessage::ErrorResponse(e) => {
                return Err(PhysicalError::Stream(format!("WAL stream end: {e}")));
            }
            _ => {}
        }
    }
    let _ = client.close().await;
    Ok(spool)
}
