//! The importer and exporter gRPC services, and the process around them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::children;
use crate::export::{ExportEntries, ExportStream};
use crate::import::{Hub, ImportConfig, ImportStream, OpenStream, PlakarSink};
use crate::proto::{exporter as ex, importer as im};
use crate::stdio;

/// How long `Close` and the end of the connection wait for a cancelled job to clean up before
/// its children are killed regardless.
const CANCEL_GRACE: Duration = Duration::from_secs(20);

/// The host's `Options` (the same message in both services).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// The host's name (`os.Hostname()`).
    pub hostname: String,
    /// `runtime.GOOS`.
    pub os: String,
    /// `runtime.GOARCH`.
    pub arch: String,
    /// Plakar's working directory.
    pub cwd: String,
    /// How many records the host processes at once.
    pub max_concurrency: i64,
    /// `-ignore` patterns (the host applies them itself).
    pub excludes: Vec<String>,
    /// Always false (the host applies `-no-xattr` itself).
    pub noxattr: bool,
}

/// What `Init` receives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitArgs {
    /// The host's options.
    pub options: HostOptions,
    /// The URI scheme the connector was picked for (`postgres`, `postgres+bin`, …).
    pub proto: String,
    /// The configuration map: `location` (normalised to `proto://rest`) and every `k=v`.
    pub config: BTreeMap<String, String>,
}

/// What `Init` answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InitInfo {
    /// Identifies the source (for an importer: host and port of the cluster). Together with
    /// `type` and `root` it selects the parent snapshot whose cache Plakar reuses.
    pub origin: String,
    /// The connector type.
    pub r#type: String,
    /// The snapshot root (and default restore base).
    pub root: String,
    /// `InitResponse.flags` ([`FLAG_STREAM`](crate::FLAG_STREAM), …).
    pub flags: u32,
}

/// Builds an importer from `Init`'s arguments.
pub trait ImporterFactory: Send + Sync + 'static {
    /// The configured importer.
    type Job: ImportJob;
    /// Validates the configuration. An error becomes `Init`'s status: Plakar prints it as
    /// `failed to create an importer for …: <message>` and exits 1.
    fn init(&self, args: InitArgs) -> impl Future<Output = Result<(InitInfo, Self::Job), String>> + Send;
}

/// A configured importer.
pub trait ImportJob: Send + Sync + 'static {
    /// Runs the backup into `sink`, calling [`RecordSink::finish`](record_sink::RecordSink::finish)
    /// on success or [`RecordSink::abort`](record_sink::RecordSink::abort) on failure (an
    /// orchestrator does both), and stopping promptly when `cancel` fires. An error returned
    /// without an abort aborts the import with that message.
    fn run(
        &self,
        sink: &mut PlakarSink,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// `Ping` (`plakar source ping`): checks that the source is reachable.
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}

/// Builds an exporter from `Init`'s arguments.
pub trait ExporterFactory: Send + Sync + 'static {
    /// The configured exporter.
    type Job: ExportJob;
    /// Validates the configuration. An error becomes `Init`'s status.
    fn init(&self, args: InitArgs) -> impl Future<Output = Result<(InitInfo, Self::Job), String>> + Send;
}

/// A configured exporter.
pub trait ExportJob: Send + Sync + 'static {
    /// Restores the entries. An error fails the restore (Export ends with that status); per-entry
    /// failures are reported with [`ExportEntries::fail`]. Entries left unread when this returns
    /// `Ok` are answered "not restored".
    fn run(
        &self,
        entries: &mut ExportEntries,
        cancel: CancellationToken,
    ) -> impl Future<Output = Result<(), String>> + Send;

    /// `Ping` (`plakar destination ping`).
    fn ping(&self) -> impl Future<Output = Result<(), String>> + Send {
        async { Ok(()) }
    }
}

fn host_options(o: Option<im::Options>) -> HostOptions {
    let o = o.unwrap_or_default();
    HostOptions {
        hostname: o.hostname,
        os: o.os,
        arch: o.arch,
        cwd: o.cwd,
        max_concurrency: o.maxconcurrency,
        excludes: o.excludes,
        noxattr: o.noxattr,
    }
}

fn exporter_options(o: Option<ex::Options>) -> HostOptions {
    let o = o.unwrap_or_default();
    HostOptions {
        hostname: o.hostname,
        os: o.os,
        arch: o.arch,
        cwd: o.cwd,
        max_concurrency: o.maxconcurrency,
        excludes: o.excludes,
        noxattr: o.noxattr,
    }
}

struct JobState<J> {
    job: Option<Arc<J>>,
    started: bool,
    hub: Option<Arc<Hub>>,
    task: Option<JoinHandle<()>>,
}

impl<J> Default for JobState<J> {
    fn default() -> Self {
        Self { job: None, started: false, hub: None, task: None }
    }
}

struct Shared<J> {
    state: Mutex<JobState<J>>,
    cancel: CancellationToken,
}

impl<J> Shared<J> {
    fn new() -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(JobState::default()), cancel: CancellationToken::new() })
    }

    /// Cancels the job, waits for it (bounded), kills what is left of its children.
    async fn shut_down(&self) {
        self.cancel.cancel();
        let task = self.state.lock().await.task.take();
        if let Some(task) = task
            && tokio::time::timeout(CANCEL_GRACE, task).await.is_err()
        {
            tracing::warn!("the job did not stop within {CANCEL_GRACE:?} of its cancellation");
        }
        if let Some(hub) = self.state.lock().await.hub.take() {
            hub.close();
        }
        children::kill_all();
    }
}

struct ImporterService<F: ImporterFactory> {
    factory: Arc<F>,
    shared: Arc<Shared<F::Job>>,
    cfg: ImportConfig,
}

#[tonic::async_trait]
impl<F: ImporterFactory> im::importer_server::Importer for ImporterService<F> {
    type ImportStream = ImportStream;
    type OpenStream = OpenStream;

    async fn init(&self, request: Request<im::InitRequest>) -> Result<Response<im::InitResponse>, Status> {
        let req = request.into_inner();
        let args = InitArgs {
            options: host_options(req.options),
            proto: req.proto,
            config: req.config.into_iter().collect(),
        };
        let (info, job) = self.factory.init(args).await.map_err(Status::invalid_argument)?;
        let mut st = self.shared.state.lock().await;
        if st.job.is_some() {
            return Err(Status::failed_precondition("Init was already called"));
        }
        st.job = Some(Arc::new(job));
        tracing::debug!(origin = %info.origin, r#type = %info.r#type, root = %info.root, flags = info.flags, "importer ready");
        Ok(Response::new(im::InitResponse {
            origin: info.origin,
            r#type: info.r#type,
            root: info.root,
            flags: info.flags,
        }))
    }

    async fn ping(&self, _: Request<im::PingRequest>) -> Result<Response<im::PingResponse>, Status> {
        let job = self.shared.state.lock().await.job.clone();
        match job {
            Some(job) => job.ping().await.map_err(Status::unavailable)?,
            None => return Err(Status::failed_precondition("Ping before Init")),
        }
        Ok(Response::new(im::PingResponse {}))
    }

    async fn import(
        &self,
        request: Request<Streaming<im::ImportRequest>>,
    ) -> Result<Response<Self::ImportStream>, Status> {
        let mut st = self.shared.state.lock().await;
        let Some(job) = st.job.clone() else {
            return Err(Status::failed_precondition("Import before Init"));
        };
        if st.started {
            return Err(Status::failed_precondition("Import was already called"));
        }
        if self.shared.cancel.is_cancelled() {
            return Err(Status::failed_precondition("Import after Close"));
        }
        st.started = true;
        let hub = Hub::new(self.cfg.clone());
        let cancel = self.shared.cancel.clone();
        let (mut sink, stream) = crate::import::start(Arc::clone(&hub), request.into_inner(), cancel.clone());
        st.hub = Some(hub);
        st.task = Some(tokio::spawn(async move {
            let result = job.run(&mut sink, cancel).await;
            match result {
                Ok(()) if sink.ended() => {}
                Ok(()) => {
                    let _ = record_sink::RecordSink::abort(
                        &mut sink,
                        "internal error: the backup ended without finishing",
                    )
                    .await;
                }
                Err(e) if !sink.ended() => {
                    let _ = record_sink::RecordSink::abort(&mut sink, &e).await;
                }
                Err(e) => tracing::error!("the backup failed after it ended: {e}"),
            }
            tracing::debug!(stats = ?sink.stats(), "backup job done");
        }));
        Ok(Response::new(stream))
    }

    async fn open(&self, request: Request<im::OpenRequest>) -> Result<Response<Self::OpenStream>, Status> {
        let record =
            request.into_inner().record.ok_or_else(|| Status::invalid_argument("Open without a record"))?;
        let hub = self.shared.state.lock().await.hub.clone();
        let Some(hub) = hub else {
            return Err(Status::failed_precondition("Open before Import"));
        };
        Ok(Response::new(hub.open(&record)?))
    }

    async fn close(&self, _: Request<im::CloseRequest>) -> Result<Response<im::CloseResponse>, Status> {
        tracing::debug!("Close");
        self.shared.shut_down().await;
        Ok(Response::new(im::CloseResponse {}))
    }
}

struct ExporterService<F: ExporterFactory> {
    factory: Arc<F>,
    shared: Arc<Shared<F::Job>>,
}

#[tonic::async_trait]
impl<F: ExporterFactory> ex::exporter_server::Exporter for ExporterService<F> {
    type ExportStream = ExportStream;

    async fn init(&self, request: Request<ex::InitRequest>) -> Result<Response<ex::InitResponse>, Status> {
        let req = request.into_inner();
        let args = InitArgs {
            options: exporter_options(req.options),
            proto: req.proto,
            config: req.config.into_iter().collect(),
        };
        let (info, job) = self.factory.init(args).await.map_err(Status::invalid_argument)?;
        let mut st = self.shared.state.lock().await;
        if st.job.is_some() {
            return Err(Status::failed_precondition("Init was already called"));
        }
        st.job = Some(Arc::new(job));
        Ok(Response::new(ex::InitResponse {
            origin: info.origin,
            r#type: info.r#type,
            root: info.root,
            flags: info.flags,
        }))
    }

    async fn ping(&self, _: Request<ex::PingRequest>) -> Result<Response<ex::PingResponse>, Status> {
        let job = self.shared.state.lock().await.job.clone();
        match job {
            Some(job) => job.ping().await.map_err(Status::unavailable)?,
            None => return Err(Status::failed_precondition("Ping before Init")),
        }
        Ok(Response::new(ex::PingResponse {}))
    }

    async fn export(
        &self,
        request: Request<Streaming<ex::ExportRequest>>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let mut st = self.shared.state.lock().await;
        let Some(job) = st.job.clone() else {
            return Err(Status::failed_precondition("Export before Init"));
        };
        if st.started {
            return Err(Status::failed_precondition("Export was already called"));
        }
        st.started = true;
        let cancel = self.shared.cancel.clone();
        let (mut entries, results) = ExportEntries::new(request.into_inner());
        st.task = Some(tokio::spawn(async move {
            let status = match job.run(&mut entries, cancel).await {
                Ok(()) => {
                    match entries.drain(Some("not restored: the exporter stopped before this entry")).await {
                        Ok(()) => None,
                        Err(e) => Some(Status::aborted(e.to_string())),
                    }
                }
                Err(e) => Some(Status::aborted(e)),
            };
            if let Some(s) = &status {
                tracing::error!("restore failed: {}", s.message());
            }
            entries.end(status).await;
        }));
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(results))))
    }

    async fn close(&self, _: Request<ex::CloseRequest>) -> Result<Response<ex::CloseResponse>, Status> {
        // A running Export is left to finish (the host calls Close after Export ended); only a
        // job still running when the connection ends is cancelled.
        Ok(Response::new(ex::CloseResponse {}))
    }
}

/// Serves the importer on `io` until the host closes the connection, then cancels the job,
/// waits for it (bounded) and kills every registered child process group.
pub async fn serve_importer<F, IO>(factory: F, cfg: ImportConfig, io: IO) -> Result<(), hyper::Error>
where
    F: ImporterFactory,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Shared::new();
    let svc = ImporterService { factory: Arc::new(factory), shared: Arc::clone(&shared), cfg };
    let server = im::importer_server::ImporterServer::new(svc)
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(4 << 20);
    let result = stdio::serve_connection(io, tonic::service::Routes::new(server)).await;
    tracing::debug!("connection closed");
    shared.shut_down().await;
    peer_gone_is_ok(result)
}

/// Serves the exporter on `io` until the host closes the connection (see [`serve_importer`]).
pub async fn serve_exporter<F, IO>(factory: F, io: IO) -> Result<(), hyper::Error>
where
    F: ExporterFactory,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let shared = Shared::new();
    let svc = ExporterService { factory: Arc::new(factory), shared: Arc::clone(&shared) };
    let server = ex::exporter_server::ExporterServer::new(svc)
        .max_decoding_message_size(4 << 20)
        .max_encoding_message_size(4 << 20);
    let result = stdio::serve_connection(io, tonic::service::Routes::new(server)).await;
    tracing::debug!("connection closed");
    shared.shut_down().await;
    peer_gone_is_ok(result)
}

/// Everything a plugin process does before serving: guard stdout, start logging, refuse argv
/// (Plakar passes none), build the runtime.
fn prepare(name: &str) -> (std::os::fd::OwnedFd, tokio::runtime::Runtime) {
    let out = match stdio::guard_stdout() {
        Ok(fd) => fd,
        Err(e) => exit_with(name, &format!("cannot set up stdout: {e}")),
    };
    crate::init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.is_empty() {
        exit_with(
            name,
            &format!(
                "{name} is a Plakar plugin and takes no arguments (got {}); install it with `plakar pkg add`",
                args.len()
            ),
        );
    }
    let rt = if std::env::var("PLAKAR_PG_RUNTIME").as_deref() == Ok("multi") {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    };
    match rt {
        Ok(rt) => (out, rt),
        Err(e) => exit_with(name, &format!("cannot start the runtime: {e}")),
    }
}

fn exit_with(name: &str, msg: &str) -> ! {
    tracing::error!("{name}: {msg}");
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{name}: {msg}");
    }
    children::kill_all();
    std::process::exit(1)
}

/// The whole life of an importer plugin process: call it from `main`. Exits 0 when the host
/// closes the pipes, 1 on a transport failure.
pub fn run_importer<F: ImporterFactory>(name: &str, factory: F) -> ! {
    let (out, rt) = prepare(name);
    let result = rt.block_on(async move {
        let io = stdio::StdioTransport::new(out)?;
        serve_importer(factory, ImportConfig::from_env(), io).await.map_err(std::io::Error::other)
    });
    finish_process(name, result)
}

/// The whole life of an exporter plugin process: call it from `main`.
pub fn run_exporter<F: ExporterFactory>(name: &str, factory: F) -> ! {
    let (out, rt) = prepare(name);
    let result = rt.block_on(async move {
        let io = stdio::StdioTransport::new(out)?;
        serve_exporter(factory, io).await.map_err(std::io::Error::other)
    });
    finish_process(name, result)
}

/// The host closing the pipes (even before its first request, or mid-frame when it is killed)
/// is the normal end of a plugin's life, not a failure.
fn peer_gone_is_ok(result: Result<(), hyper::Error>) -> Result<(), hyper::Error> {
    match result {
        Err(e) if peer_gone(&e) => {
            tracing::debug!("the host closed the connection: {e}");
            Ok(())
        }
        other => other,
    }
}

fn peer_gone(e: &hyper::Error) -> bool {
    if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        return true;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
                    | std::io::ErrorKind::ConnectionReset
            );
        }
        if s.to_string().contains("connection closed before reading preface") {
            return true;
        }
        source = s.source();
    }
    e.to_string().contains("connection closed before reading preface")
}

fn finish_process(name: &str, result: std::io::Result<()>) -> ! {
    children::kill_all();
    match result {
        Ok(()) => std::process::exit(0),
        Err(e) => exit_with(name, &format!("connection to Plakar failed: {}", error_chain(&e))),
    }
}

/// An error and its sources, outermost first ("http2 error: …: …"): hyper's own message names
/// only the layer, the cause is in the sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
