//! Stream mode: WAL received on a second replication connection while the base backup runs
//! (`pg_basebackup -X stream`), spooled on disk, and handed to the sink after the archives.
//!
//! Sequence (protocol-replication.html; `receivelog.c`): before `BASE_BACKUP` is sent,
//! `CREATE_REPLICATION_SLOT … TEMPORARY PHYSICAL RESERVE_WAL` so nothing from the last
//! checkpoint on is recycled before we read it, and `IDENTIFY_SYSTEM` (the system must be the
//! backup's); once the backup has started, `START_REPLICATION SLOT … <start segment> TIMELINE
//! <tli>`, then the
//! stream itself, driven by `pg_wire`'s sans-IO [`WalReceiver`] (status updates, keepalive
//! replies, the stop at the backup's end LSN, timeline switches and server errors). The task
//! here only moves bytes between the connection, the machine and the spool, and reads the clock.

use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use pg_config::{Config, Replication};
use pg_conn::Client;
use pg_wire::replication::receiver::{ReceiverError, ReceiverEvent, WalReceiver};
use pg_wire::replication::{IdentifySystem, Lsn};
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, Wants};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::BackupOptions;
use crate::PhysicalError;
use crate::source::{RunOptions, ServerFacts, slot_name};
use crate::timeout;
use crate::wal::{WalError, WalSpool};
use crate::walcheck::WalCheck;

/// The WAL receiver task of one backup.
#[derive(Debug)]
pub(crate) struct Streamer {
    end: watch::Sender<Option<Lsn>>,
    /// The receiver task, until it has been awaited.
    task: Option<JoinHandle<Result<WalSpool, PhysicalError>>>,
    /// Its spool, once it has ended successfully.
    done: Option<WalSpool>,
    /// The mode of the files it hands over (0600, or 0640 with group access).
    file_mode: u32,
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

/// The second connection, with its slot, before the backup starts.
///
/// Made before `BASE_BACKUP` is sent: the slot's `RESERVE_WAL` holds every segment from the last
/// checkpoint's redo pointer, which is at or before the backup's start, so no checkpoint that
/// runs while the backup starts can recycle the WAL the receiver will ask for (made after the
/// backup had started, a busy server with a small `max_wal_size` could remove the start segment
/// first: `58P01 requested WAL segment … has already been removed`).
#[derive(Debug)]
pub(crate) struct PreparedStreamer {
    client: Client,
    slot: String,
}

impl Streamer {
    /// Opens the second connection, creates its slot and checks it reaches the same system.
    pub(crate) async fn prepare(
        config: &Config,
        server: &ServerFacts,
        run: &RunOptions,
        options: &BackupOptions,
    ) -> Result<PreparedStreamer, PhysicalError> {
        let mut config = config.clone();
        config.set_replication(Replication::Physical);
        let mut client = Client::connect(&config).await.map_err(failed_to("connecting"))?;
        client.set_read_timeout(run.read_timeout);
        let slot = match &options.slot {
            Some(name) => {
                if options.create_slot {
                    // Permanent: it outlives the connection and keeps the WAL a standby made
                    // from this backup needs (checked by BackupOptions::check: a plain name).
                    client
                        .simple_query(&format!("CREATE_REPLICATION_SLOT {name} PHYSICAL RESERVE_WAL"))
                        .await
                        .map_err(failed_to("creating the replication slot"))?;
                    tracing::info!("created replication slot {name}");
                }
                name.clone()
            }
            None => {
                let slot = slot_name("wal");
                client
                    .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} TEMPORARY PHYSICAL RESERVE_WAL"))
                    .await
                    .map_err(failed_to("creating its temporary slot"))?;
                slot
            }
        };
        let id = client.query_one("IDENTIFY_SYSTEM").await.map_err(failed_to("IDENTIFY_SYSTEM"))?;
        let id = IdentifySystem::from_result(&id).map_err(|error| PhysicalError::Reply { error })?;
        if id.systemid != server.system_identifier {
            return Err(PhysicalError::OtherSystem { backup: server.system_identifier, wal: id.systemid });
        }
        Ok(PreparedStreamer { client, slot })
    }

    /// Starts receiving from `start` on `timeline` on the prepared connection.
    pub(crate) async fn start(
        prepared: PreparedStreamer,
        server: &ServerFacts,
        start: Lsn,
        timeline: u32,
        run: &RunOptions,
    ) -> Result<Self, PhysicalError> {
        let PreparedStreamer { mut client, slot } = prepared;
        let spool = WalSpool::new(run.spool_dir.as_deref(), server.wal_segment_size, timeline, start)?;
        let from = spool.start_position();
        let command = format!("START_REPLICATION SLOT {slot} PHYSICAL {from} TIMELINE {timeline}");
        client.send_query(&command).await.map_err(failed_to("sending START_REPLICATION"))?;
        let (end, end_rx) = watch::channel(None);
        // Under a read timeout, every periodic status update asks for a reply: an idle server
        // sends no WAL, and the timeout must not take that silence for a dead connection.
        let machine = WalReceiver::new(from, true)
            .with_status_interval(timeout::status_interval(run.read_timeout))
            .with_reply_requests(run.read_timeout.is_some());
        let task = tokio::spawn(receive(client, spool, machine, end_rx));
        Ok(Self {
            end,
            task: Some(task),
            done: None,
            file_mode: crate::pipeline::file_mode(server.data_directory_mode),
        })
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
    pub(crate) fn stop_at(&self, lsn: Lsn) {
        let _ = self.end.send(Some(lsn));
    }

    /// Waits for the receiver, then writes every segment as `/data/pg_wal/<segment>` into the
    /// sink, with `archive_status/<segment>.done` for each complete one. Returns the number of
    /// segments.
    pub(crate) async fn finish_into<S: RecordSink>(
        mut self,
        sink: &mut S,
        mut wal: Option<&mut WalCheck>,
    ) -> Result<usize, PhysicalError> {
        let mut spool = match (self.done.take(), self.task.take()) {
            (Some(spool), _) => spool,
            (None, Some(task)) => task.await.map_err(join_error)??,
            (None, None) => return Err(PhysicalError::internal("the WAL receiver already failed")),
        };
        let segments = spool.finish()?;
        // The last segment is complete only if the stream stopped on a segment boundary.
        let complete =
            segments.len().saturating_sub(usize::from(spool.position().0 % spool.segment_size() != 0));
        let now = SystemTime::now();
        for (i, (name, path)) in segments.iter().enumerate() {
            let meta = Metadata::new(self.file_mode, now);
            let size = spool.segment_size();
            let record = Record {
                path: RecordPath::new(format!("/data/pg_wal/{name}")).expect("valid"),
                kind: EntryKind::File { size: Some(size) },
                meta: meta.clone(),
            };
            let mut send = sink.record(&record).await? == Wants::Body;
            // The WAL check reads every segment of the range, whether the sink wants it or not.
            let checking = match wal.as_deref_mut() {
                Some(check) => check.segment_start(name.as_bytes())?,
                None => false,
            };
            if send || checking {
                let io = |error| WalError::Io { path: path.clone(), error };
                let mut file = tokio::fs::File::open(path).await.map_err(io)?;
                let mut read = 0u64;
                loop {
                    let mut buf = bytes::BytesMut::with_capacity(1 << 20);
                    let n = tokio::io::AsyncReadExt::read_buf(&mut file, &mut buf).await.map_err(io)?;
                    if n == 0 {
                        break;
                    }
                    read += n as u64;
                    if checking && let Some(check) = wal.as_deref_mut() {
                        check.data(&buf)?;
                    }
                    // The consumer may want no more of it; the spool's copy is still read for
                    // the check.
                    if send && sink.data(buf.freeze()).await? == Flow::Stop {
                        send = false;
                        if !checking {
                            read = size;
                            break;
                        }
                    }
                }
                if read != size {
                    return Err(WalError::Short { segment: name.clone(), read, expected: size }.into());
                }
                if checking && let Some(check) = wal.as_deref_mut() {
                    check.segment_end()?;
                }
            }
            sink.end_file().await?;
            spool.remove(name).ok();
            // Only complete segments are marked archived, as pg_basebackup does (receivelog.c):
            // the one still being written when the backup ended gets more WAL once restored,
            // and a `.done` would let the restored server recycle it without archiving it.
            if i >= complete {
                continue;
            }
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

/// The WAL connection failed: say which connection, and how far it had got.
fn lost(error: pg_conn::Error, position: Lsn) -> PhysicalError {
    PhysicalError::WalConnection { at: format!("at {position}"), error: Box::new(error) }
}

/// The WAL connection failed while `doing` something before streaming.
fn failed_to(doing: &'static str) -> impl FnOnce(pg_conn::Error) -> PhysicalError {
    move |error| PhysicalError::WalConnection { at: doing.to_owned(), error: Box::new(error) }
}

/// Runs the stream to its end; the spool then holds everything up to the backup's end LSN.
///
/// When the server ends the stream of our timeline first (the standby we stream from was
/// promoted), `pg_basebackup` follows the switch (`receivelog.c`), but a backup whose standby was
/// promoted in the middle cannot succeed: the server fails it ("the standby was promoted during
/// online backup") and that is the error to report. So the receiver then waits for the backup's
/// outcome: the backup fails (and cancels this task), or it ends, and its end must already have
/// been received.
async fn receive(
    mut client: Client,
    mut spool: WalSpool,
    mut machine: WalReceiver,
    mut end: watch::Receiver<Option<Lsn>>,
) -> Result<WalSpool, PhysicalError> {
    match stream(&mut client, &mut spool, &mut machine, &mut end).await {
        Ok(()) => {
            // The command is over and the connection idle; the temporary slot dies with it.
            let _ = client.close().await;
            Ok(spool)
        }
        Err(StreamError::Receiver(ReceiverError::TimelineEnded { at, next_timeline, .. })) => {
            let _ = client.close().await;
            tracing::info!(
                "WAL stream: the server ended timeline at {at}{}",
                next_timeline
                    .map_or_else(String::new, |(tli, lsn)| format!(" (timeline {tli} starts at {lsn})"))
            );
            let backup_end = match machine.end() {
                Some(lsn) => lsn,
                None => loop {
                    if end.changed().await.is_err() {
                        return Err(PhysicalError::Internal("the backup stopped waiting for its WAL".into()));
                    }
                    if let Some(lsn) = *end.borrow_and_update() {
                        break lsn;
                    }
                },
            };
            if at >= backup_end {
                return Ok(spool);
            }
            let error = ReceiverError::TimelineEnded { at, end: Some(backup_end), next_timeline };
            Err(PhysicalError::WalStream { error })
        }
        Err(error) => Err(error.into()),
    }
}

/// Why [`stream`] stopped: the receiver's error, or one of the shell's (lost connection, spool).
enum StreamError {
    Receiver(ReceiverError),
    Other(PhysicalError),
}

impl From<PhysicalError> for StreamError {
    fn from(e: PhysicalError) -> Self {
        Self::Other(e)
    }
}

impl From<WalError> for StreamError {
    fn from(e: WalError) -> Self {
        Self::Other(e.into())
    }
}

impl From<StreamError> for PhysicalError {
    fn from(e: StreamError) -> Self {
        match e {
            StreamError::Receiver(error) => PhysicalError::WalStream { error },
            StreamError::Other(e) => e,
        }
    }
}

/// Moves frames from the connection to `machine`, its WAL into the spool and what it asks to
/// send back to the connection, waking up for the machine's deadline and for the backup's end.
async fn stream(
    client: &mut Client,
    spool: &mut WalSpool,
    machine: &mut WalReceiver,
    end: &mut watch::Receiver<Option<Lsn>>,
) -> Result<(), StreamError> {
    let mut out = BytesMut::new();
    loop {
        machine.poll(SystemTime::now(), &mut out).map_err(StreamError::Receiver)?;
        send(client, &mut out, machine.position()).await?;
        // The machine's next status update; a deadline in the past means now.
        let sleep = machine.deadline().map(|d| d.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO));
        let frame = tokio::select! {
            frame = client.read_frame() => frame.map_err(|e| lost(e, machine.position()))?,
            changed = end.changed(), if machine.end().is_none() => {
                if changed.is_err() {
                    return Err(PhysicalError::Internal("the backup stopped waiting for its WAL".into()).into());
                }
                if let Some(lsn) = *end.borrow_and_update() {
                    machine.stop_at(lsn);
                }
                continue;
            }
            () = tokio::time::sleep(sleep.unwrap_or_default()), if sleep.is_some() => continue,
        };
        match machine.handle(frame, SystemTime::now(), &mut out).map_err(StreamError::Receiver)? {
            Some(ReceiverEvent::Wal(x)) => spool.write(x.wal_start, &x.data)?,
            Some(ReceiverEvent::Notice(n)) => tracing::warn!("WAL stream: {n}"),
            Some(ReceiverEvent::Finished) => return Ok(()),
            None => {}
        }
        send(client, &mut out, machine.position()).await?;
    }
}

/// Sends what the machine appended to `out`, if anything.
async fn send(client: &mut Client, out: &mut BytesMut, position: Lsn) -> Result<(), PhysicalError> {
    if out.is_empty() {
        return Ok(());
    }
    let bytes = out.split();
    client.send_encoded(|buf| buf.extend_from_slice(&bytes)).await.map_err(|e| lost(e, position))
}
