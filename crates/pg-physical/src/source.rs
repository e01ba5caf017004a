//! Driving a base backup over the project's own replication connection.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_basebackup::{Decoder, DecoderOptions, Event};
use pg_config::{Config, Replication};
use pg_conn::Client;
use pg_recording::{BASE_BACKUP_MARK, Direction, RecordingMeta, RecordingWriter};
use pg_wire::replication::{IdentifySystem, ResultError, Show, check_segment_size};
use record_sink::{RecordSink, Source};

use crate::command::{BackupOptions, Compression, WalMethod};
use crate::pipeline::{BackupSummary, Pipeline};
use crate::verify::ManifestCheck;
use crate::walcheck::WalFacts;
use crate::{PhysicalError, stream, timeout};

/// The name of this client, recorded where the Go plugin recorded `pg_basebackup_version`.
pub const CLIENT_NAME: &str = concat!("pg_plakar/", env!("CARGO_PKG_VERSION"));

/// How a backup runs: where its recording and WAL spool go, how long it waits for a silent
/// server.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Record every byte the backup connection exchanges after authentication (see
    /// [`pg_recording`]).
    pub record_to: Option<PathBuf>,
    /// Directory for the stream-mode WAL spool (the system temp dir by default).
    pub spool_dir: Option<PathBuf>,
    /// Receives the server's estimate of the backup's size in bytes (the tablespace sizes of
    /// `PROGRESS`) when the backup starts: for a progress display.
    pub size_hint: Option<Arc<AtomicU64>>,
    /// Fail when a connection sends nothing for this long ([`timeout`](crate::timeout) says
    /// where the limit is stretched); `None` waits forever. Default
    /// [`DEFAULT_READ_TIMEOUT`](crate::timeout::DEFAULT_READ_TIMEOUT).
    pub read_timeout: Option<Duration>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            record_to: None,
            spool_dir: None,
            size_hint: None,
            read_timeout: Some(timeout::DEFAULT_READ_TIMEOUT),
        }
    }
}

/// The facts the backup connection learnt before the backup began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFacts {
    /// `server_version`.
    pub server_version: String,
    /// Major version.
    pub major: u32,
    /// `IDENTIFY_SYSTEM.systemid`.
    pub system_identifier: u64,
    /// `IDENTIFY_SYSTEM.timeline`.
    pub timeline: u32,
    /// `SHOW wal_segment_size`, in bytes.
    pub wal_segment_size: u64,
    /// `SHOW data_directory_mode` (0700 or 0750).
    pub data_directory_mode: u32,
}

/// The outcome of a successful backup.
#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The server.
    pub server: ServerFacts,
    /// What was received and verified.
    pub summary: BackupSummary,
    /// WAL segments received by stream mode.
    pub streamed_wal_segments: usize,
    /// Wall time.
    pub elapsed: std::time::Duration,
}

pub(crate) fn conn_err(e: pg_conn::Error) -> PhysicalError {
    PhysicalError::Connection(e)
}

/// The physical backup as a [`Source`]: what the orchestrator runs after the metadata.
#[derive(Clone, Debug)]
pub struct PhysicalSource {
    /// The server (a replication setting is forced on).
    pub config: Config,
    /// What to ask the server for.
    pub options: BackupOptions,
    /// Recording and spool locations.
    pub run: RunOptions,
}

impl Source for PhysicalSource {
    type Report = BackupReport;
    type Error = PhysicalError;

    fn describe(&self) -> String {
        "base backup".into()
    }

    async fn run<S: RecordSink>(&mut self, sink: &mut S) -> Result<BackupReport, PhysicalError> {
        backup(&self.config, &self.options, &self.run, sink).await
    }
}

/// Takes a base backup of the cluster `config` points at and writes its records into `sink`.
///
/// Returns only after the server's final completion (a page-checksum failure arrives as an
/// error at the very end), after every file was checked against the manifest. It neither
/// finishes nor aborts the sink: whoever runs the backup does (the `backup-plan` orchestrator),
/// since a backup holds more than this source's records. Nothing is left on the server on any
/// path, cancellation (dropping the future) included: the temporary replication slots die with
/// the connections, and the stream-mode WAL spool is removed.
pub async fn backup<S: RecordSink>(
    config: &Config,
    options: &BackupOptions,
    run: &RunOptions,
    sink: &mut S,
) -> Result<BackupReport, PhysicalError> {
    let started = Instant::now();
    // What needs no server is refused before connecting.
    options.check()?;
    let mut config = timeout::with_connect_timeout(config, run.read_timeout);
    config.set_replication(Replication::Physical);
    let mut client = Client::connect(&config).await.map_err(conn_err)?;
    client.set_read_timeout(run.read_timeout);
    let server = server_facts(&mut client).await?;
    options.validate(server.major)?;
    tracing::info!(
        "connected to {} (PostgreSQL {}, system {}, timeline {})",
        client.target(),
        server.server_version,
        server.system_identifier,
        server.timeline
    );

    if options.wal_method == WalMethod::Fetch {
        // The WAL guard: a temporary slot created on this connection holds back every segment
        // from the last checkpoint's redo pointer (≤ the backup's start) until the connection
        // ends, so the WAL appended at the end cannot have been recycled meanwhile.
        let slot = slot_name("fetch");
        client
            .simple_query(&format!("CREATE_REPLICATION_SLOT {slot} TEMPORARY PHYSICAL RESERVE_WAL"))
            .await
            .map_err(conn_err)?;
        tracing::debug!("temporary slot {slot} guards the WAL of the backup");
    }

    let command = options.command(server.major);
    let compression = match options.compression {
        Compression::None => pg_basebackup::Compression::None,
        Compression::Gzip(_) => pg_basebackup::Compression::Gzip,
        Compression::Lz4 => pg_basebackup::Compression::Lz4,
        Compression::Zstd(_) => pg_basebackup::Compression::Zstd,
    };
    let decoder_options =
        DecoderOptions { server_major: server.major, manifest: server.major >= 13, compression };

    let mut manifest = ManifestCheck::new((server.major >= 13).then_some(options.manifest_checksums));
    manifest.expect_system_identifier(server.system_identifier);
    let mut run_state = Running {
        decoder: Decoder::new(decoder_options)?,
        pipeline: Pipeline::new(server.data_directory_mode, manifest),
        streamer: None,
    };
    if options.wal_method != WalMethod::None {
        // The backup's WAL is read record by record before the backup counts as complete.
        let facts = WalFacts {
            segment_size: server.wal_segment_size,
            system_identifier: Some(server.system_identifier),
            major: server.major,
        };
        run_state.pipeline.check_wal(facts, options.wal_method == WalMethod::Fetch);
    }
    // The server says nothing while it runs the starting checkpoint: a longer limit until the
    // first result set (see `timeout`).
    if let Some(read_timeout) = run.read_timeout {
        let rows = client.simple_query("SHOW checkpoint_timeout").await.map_err(conn_err)?;
        let checkpoint_timeout = rows
            .first()
            .and_then(|r| r.get(0))
            .and_then(timeout::parse_setting)
            .unwrap_or(Duration::from_secs(300));
        let spread = options.checkpoint == crate::Checkpoint::Spread;
        client.set_read_timeout(Some(timeout::start_limit(read_timeout, checkpoint_timeout, spread)));
    }
    // The recording starts right before BASE_BACKUP (after the SHOW above): its response is
    // what follows the mark.
    let recorder = match &run.record_to {
        Some(path) => Some(Recorder::create(path, &server, &command, decoder_options)?),
        None => None,
    };
    if let Some(r) = &recorder {
        client.set_tap(Some(Box::new(r.clone())));
        r.mark(BASE_BACKUP_MARK)?;
    }
    // Stream mode: the WAL connection and its slot exist before the backup starts (see
    // `PreparedStreamer`).
    let mut prepared = match options.wal_method {
        WalMethod::Stream => Some(stream::Streamer::prepare(&config, &server, run, options).await?),
        _ => None,
    };
    tracing::debug!("{command}");
    client.send_query(&command).await.map_err(conn_err)?;
    if let Err(e) = run_state.receive(&mut client, &mut prepared, &server, run, sink).await {
        // Stop the WAL receiver now: its connection (and slot) and its spool go with it.
        if let Some(s) = run_state.streamer.take() {
            s.cancel().await;
        }
        return Err(e);
    }
    if let Some(r) = &recorder {
        client.set_tap(None);
        r.finish()?;
    }

    let mut streamed = 0;
    if let Some(s) = run_state.streamer.take() {
        let mut wal = run_state.pipeline.take_wal_check();
        streamed = s.finish_into(sink, wal.as_mut()).await?;
        if let (Some(wal), Some((end, timeline))) = (wal, run_state.pipeline.summary().end) {
            let records = wal.finish(end, timeline)?;
            run_state.pipeline.wal_verified(records);
        }
    }
    // Everything is in and verified: the orchestrator may now finish the sink.
    if let Err(e) = client.close().await {
        tracing::debug!("closing the backup connection: {e}");
    }
    let summary = run_state.pipeline.summary().clone();
    tracing::info!(
        "backup complete: {} files, {} bytes, {} verified against backup_manifest, {} WAL records verified, in {:.1?}",
        summary.files,
        summary.bytes,
        summary.verified_files,
        summary.wal_records_verified,
        started.elapsed()
    );
    Ok(BackupReport { server, summary, streamed_wal_segments: streamed, elapsed: started.elapsed() })
}

/// The state of a backup whose `BASE_BACKUP` has been sent.
struct Running {
    decoder: Decoder,
    pipeline: Pipeline,
    streamer: Option<stream::Streamer>,
}

impl Running {
    /// Where the backup is, for error messages.
    fn at(&self) -> String {
        format!(
            "after {} bytes of the BASE_BACKUP response, {}",
            self.decoder.bytes_consumed(),
            self.pipeline.position()
        )
    }

    /// Reads the response to its final `ReadyForQuery`, feeding the pipeline; in stream mode
    /// starts the WAL receiver and fails as soon as it fails.
    async fn receive<S: RecordSink>(
        &mut self,
        client: &mut Client,
        prepared: &mut Option<stream::PreparedStreamer>,
        server: &ServerFacts,
        run: &RunOptions,
        sink: &mut S,
    ) -> Result<(), PhysicalError> {
        loop {
            let frame = match self.streamer.as_mut() {
                Some(streamer) => tokio::select! {
                    frame = client.read_frame() => frame,
                    failure = streamer.failed() => return Err(failure),
                },
                None => client.read_frame().await,
            };
            let frame = frame
                .map_err(|error| PhysicalError::Interrupted { at: self.at(), error: Box::new(error) })?;
            self.decoder.feed_frame(frame);
            loop {
                let event = match self.decoder.poll_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(pg_basebackup::DecodeError::Server(error)) => {
                        return Err(PhysicalError::Server {
                            error,
                            at: self.at(),
                            warnings: self.pipeline.summary().warnings.clone(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                if let (Event::BackupStart { tablespaces, .. }, Some(hint)) = (&event, &run.size_hint) {
                    let kb: i64 = tablespaces.iter().filter_map(|t| t.size_kb).sum();
                    hint.store(u64::try_from(kb).unwrap_or(0).saturating_mul(1024), Ordering::Relaxed);
                }
                if let Event::BackupStart { .. } = event {
                    // The checkpoint is over: from now on the server streams.
                    client.set_read_timeout(run.read_timeout);
                }
                match event {
                    Event::Done => {
                        self.decoder.finish()?;
                        return Ok(());
                    }
                    Event::BackupStart { start_lsn, timeline, .. } => {
                        if let Some(p) = prepared.take() {
                            self.streamer =
                                Some(stream::Streamer::start(p, server, start_lsn, timeline, run).await?);
                        }
                        self.pipeline.handle(event, sink).await?;
                    }
                    Event::BackupEnd { end_lsn, .. } => {
                        if let Some(s) = &self.streamer {
                            s.stop_at(end_lsn);
                        }
                        self.pipeline.handle(event, sink).await?;
                    }
                    event => self.pipeline.handle(event, sink).await?,
                }
            }
        }
    }
}

/// A replication slot name unique to this process and purpose.
pub(crate) fn slot_name(purpose: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("pg_plakar_{purpose}_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// `SHOW` and `IDENTIFY_SYSTEM` on a replication connection, read by `pg_wire`'s typed readers.
pub(crate) async fn server_facts(client: &mut Client) -> Result<ServerFacts, PhysicalError> {
    let server_version = client.parameter("server_version").unwrap_or_default().to_owned();
    let major = client.server_major().ok_or_else(|| PhysicalError::Reply {
        error: ResultError::Invalid {
            command: "startup",
            column: "server_version",
            value: server_version.chars().take(64).collect(),
        },
    })?;
    if !(12..=18).contains(&major) {
        return Err(PhysicalError::Options(crate::command::OptionError::Version(major)));
    }
    let reply = |error| PhysicalError::Reply { error };
    let mode = Show::from_result(&client.query_one("SHOW data_directory_mode").await.map_err(conn_err)?)
        .map_err(reply)?;
    let data_directory_mode = u32::from_str_radix(&mode.value, 8)
        .ok()
        .filter(|m| *m == 0o700 || *m == 0o750)
        .ok_or_else(|| invalid_setting("data_directory_mode", &mode.value))?;
    let size = Show::from_result(&client.query_one("SHOW wal_segment_size").await.map_err(conn_err)?)
        .map_err(reply)?;
    let wal_segment_size = size
        .size_bytes()
        .filter(|&s| check_segment_size(s).is_ok())
        .ok_or_else(|| invalid_setting("wal_segment_size", &size.value))?;
    let id = IdentifySystem::from_result(&client.query_one("IDENTIFY_SYSTEM").await.map_err(conn_err)?)
        .map_err(reply)?;
    Ok(ServerFacts {
        server_version,
        major,
        system_identifier: id.systemid,
        timeline: id.timeline,
        wal_segment_size,
        data_directory_mode,
    })
}

fn invalid_setting(column: &'static str, value: &str) -> PhysicalError {
    PhysicalError::Reply {
        error: ResultError::Invalid { command: "SHOW", column, value: value.chars().take(64).collect() },
    }
}

/// Records the raw stream of the backup connection.
#[derive(Clone)]
struct Recorder {
    writer: Arc<Mutex<Option<RecordingWriter<std::io::BufWriter<std::fs::File>>>>>,
    start: Instant,
    error: Arc<Mutex<Option<String>>>,
}

impl Recorder {
    fn create(
        path: &std::path::Path,
        server: &ServerFacts,
        command: &str,
        decoder: DecoderOptions,
    ) -> Result<Self, PhysicalError> {
        let io = |e: std::io::Error| PhysicalError::Recording(format!("{}: {e}", path.display()));
        // The recording holds cluster data: the owner's only, as the data directory.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            use std::os::unix::fs::PermissionsExt;
            let f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(path)
                .map_err(io)?;
            // An existing file keeps its mode on open: narrow it too.
            f.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(io)?;
            f
        };
        let meta = RecordingMeta {
            server_major: server.major,
            server_version: server.server_version.clone(),
            command: command.to_owned(),
            manifest: decoder.manifest,
            compression: decoder.compression,
            meta: serde_json::json!({ "client": CLIENT_NAME, "wal_segment_size": server.wal_segment_size }),
        };
        let writer = RecordingWriter::new(std::io::BufWriter::new(file), &meta)
            .map_err(|e| PhysicalError::Recording(e.to_string()))?;
        Ok(Self {
            writer: Arc::new(Mutex::new(Some(writer))),
            start: Instant::now(),
            error: Default::default(),
        })
    }

    fn write(&self, direction: Direction, bytes: &[u8]) {
        let nanos = self.start.elapsed().as_nanos() as u64;
        if let Ok(mut guard) = self.writer.lock()
            && let Some(w) = guard.as_mut()
            && let Err(e) = w.record(direction, nanos, bytes)
        {
            *guard = None;
            if let Ok(mut slot) = self.error.lock() {
                *slot = Some(e.to_string());
            }
        }
    }

    fn mark(&self, label: &str) -> Result<(), PhysicalError> {
        let nanos = self.start.elapsed().as_nanos() as u64;
        let mut guard = self.writer.lock().map_err(|_| PhysicalError::Recording("poisoned".into()))?;
        if let Some(w) = guard.as_mut() {
            w.mark(nanos, label).map_err(|e| PhysicalError::Recording(e.to_string()))?;
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), PhysicalError> {
        if let Some(e) = self.error.lock().ok().and_then(|mut e| e.take()) {
            return Err(PhysicalError::Recording(e));
        }
        let writer = self.writer.lock().ok().and_then(|mut g| g.take());
        if let Some(w) = writer {
            w.into_inner().map_err(|e| PhysicalError::Recording(e.to_string()))?;
        }
        Ok(())
    }
}

impl pg_conn::Tap for Recorder {
    fn received(&mut self, bytes: &[u8]) {
        self.write(Direction::Server, bytes);
    }

    fn sent(&mut self, bytes: &[u8]) {
        self.write(Direction::Client, bytes);
    }
}
