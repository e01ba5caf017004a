//! A connected session: connection set-up with libpq's semantics, simple queries, raw frames
//! and COPY streams.

use std::sync::Arc;

use bytes::BytesMut;
use pg_config::{ChannelBinding, Config, HostSpec, Keepalives, ResolvedConfig, RootCert, SslMode, Target};
use pg_wire::frame::MAX_MESSAGE_LEN;
use pg_wire::message::{BackendMessage, frontend};
use pg_wire::query::{CollectError, Collected, Collector, ResultSet};
use pg_wire::startup::{ChannelBindingPolicy, Replication, Session, Startup, StartupError, StartupEvent};
use pg_wire::{Frame, Framer};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Step};
use crate::tls::{self, TlsOptions, Verification};
use crate::transport::{SslReply, Stream};

/// How many bytes to ask the socket for at most, per read: large reads keep the system-call
/// count low on bulk transfers (a base backup), and `Bytes` handed out share the buffer; the
/// cap keeps the read buffer proportional to what was received.
const READ_CHUNK: usize = 256 * 1024;

/// The most row data (values plus 4 bytes per column) [`Client::query`] buffers; a larger
/// answer is refused rather than held in memory.
pub const QUERY_BUFFER_LIMIT: usize = 256 << 20;

/// The first word of a command, for error messages (never the whole text, which may hold
/// anything).
fn command_name(sql: &str) -> &str {
    let sql = sql.trim_start();
    let end = sql
        .char_indices()
        .take(40)
        .find(|&(_, c)| c.is_whitespace() || c == ';')
        .map_or_else(|| sql.char_indices().nth(40).map_or(sql.len(), |(i, _)| i), |(i, _)| i);
    &sql[..end]
}

/// Something that sees every byte a session reads and writes, in order (after TLS): used to
/// record raw protocol streams.
pub trait Tap: Send {
    /// Bytes received from the server.
    fn received(&mut self, bytes: &[u8]);
    /// Bytes sent to the server.
    fn sent(&mut self, bytes: &[u8]);
}

/// An open session with a PostgreSQL server (normal or replication).
pub struct Client {
    stream: Stream,
    framer: Framer,
    out: BytesMut,
    session: Session,
    target: String,
    tap: Option<Box<dyn Tap>>,
    /// A protocol or IO error made the session unusable.
    broken: bool,
    /// Where to send a cancel request.
    address: Address,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target)
            .field("tls", &self.stream.is_tls())
            .field("server_version", &self.session.parameter("server_version"))
            .finish_non_exhaustive()
    }
}

/// One result row of a simple query, in text format: `pg_wire`'s row (see [`Row::wire`]) with
/// lenient accessors.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row(pg_wire::query::Row);

impl Row {
    /// Column `i` as text; `None` for SQL NULL, a missing column, or text that is not UTF-8
    /// (see [`Row::get_bytes`]).
    pub fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i).ok().flatten()
    }

    /// Column `i` as bytes; `None` for SQL NULL or a missing column.
    pub fn get_bytes(&self, i: usize) -> Option<&[u8]> {
        self.0.get_bytes(i).ok().flatten().map(|b| &b[..])
    }

    /// The column named `name` as text.
    pub fn get_by_name(&self, name: &str) -> Option<&str> {
        self.0.get_by_name(name).ok().flatten()
    }

    /// Column names.
    pub fn columns(&self) -> Vec<&str> {
        self.0.description().fields.iter().map(|f| f.name.as_str()).collect()
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the row has no column.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The protocol-level row, with its description and strict accessors.
    pub fn wire(&self) -> &pg_wire::query::Row {
        &self.0
    }
}

impl Client {
    /// Connects with a libpq-style configuration (environment and passfile applied).
    pub async fn connect(config: &Config) -> Result<Client, Error> {
        let resolved = config.resolve().map_err(|e| Error::new(ErrorKind::Config(e)))?;
        // What libpq prints on stderr (an insecure password file it ignores, …).
        for w in &resolved.warnings {
            tracing::warn!("{w}");
        }
        Self::connect_resolved(&resolved).await
    }

    /// Connects with an already resolved configuration: tries each target in order, as libpq
    /// does, and reports every failure if none accepts.
    pub async fn connect_resolved(config: &ResolvedConfig) -> Result<Client, Error> {
        if config.tls.negotiation != pg_config::SslNegotiation::Postgres {
            return Err(Error::new(ErrorKind::Unsupported("sslnegotiation=direct is not supported".into())));
        }
        let mut failures = Vec::new();
        for target in &config.targets {
            let attempt = connect_target(config, target);
            let result = match config.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, attempt)
                    .await
                    .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout(limit)).at(Step::Connect))),
                None => attempt.await,
            };
            match result {
                Ok(client) => return Ok(client),
                Err(e) => {
                    let e = e.on(&target.to_string());
                    tracing::debug!("{e}");
                    failures.push(e);
                }
            }
        }
        match failures.len() {
            0 => Err(Error::protocol("no target to connect to")),
            1 => Err(failures.pop().expect("one")),
            _ => Err(Error::new(ErrorKind::AllTargetsFailed(failures))),
        }
    }

    /// Everything the server reported at startup (parameters, backend key, auth method).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// A `ParameterStatus` value (`server_version`, `integer_datetimes`, …).
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.session.parameter(name)
    }

    /// The server's major version, from `server_version`.
    pub fn server_major(&self) -> Option<u32> {
        self.session.server_major()
    }

    /// Whether the session is encrypted.
    pub fn is_tls(&self) -> bool {
        self.stream.is_tls()
    }

    /// The server this session is connected to.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Installs a tap that sees every byte from now on.
    pub fn set_tap(&mut self, tap: Option<Box<dyn Tap>>) {
        self.tap = tap;
    }

    /// Runs a simple query and returns the rows of its (last) result set.
    ///
    /// Works on replication connections too, for replication commands (`IDENTIFY_SYSTEM`,
    /// `SHOW`, `CREATE_REPLICATION_SLOT …`). A server error is returned after the connection
    /// is back to idle, so the session stays usable.
    pub async fn simple_query(&mut self, sql: &str) -> Result<Vec<Row>, Error> {
        let collected = self.query(sql).await?;
        Ok(collected
            .sets
            .into_iter()
            .last()
            .map_or_else(Vec::new, |set| set.rows.into_iter().map(Row).collect()))
    }

    /// Runs a simple query and returns everything it answered (every result set, command tags,
    /// notices), buffering at most [`QUERY_BUFFER_LIMIT`] bytes of rows. The responses go
    /// through `pg_wire`'s [`Collector`], the one machine that checks their order.
    ///
    /// A server error is returned (as [`ErrorKind::Db`]) once the connection is back to idle,
    /// so the session stays usable; a protocol violation or a COPY marks it broken.
    pub async fn query(&mut self, sql: &str) -> Result<Collected, Error> {
        self.send_query(sql).await?;
        let mut collector = Collector::new(QUERY_BUFFER_LIMIT);
        let collected = loop {
            let frame = self.read_frame().await?;
            match collector.handle(frame) {
                Ok(Some(done)) => break done,
                Ok(None) => {}
                Err(CollectError::Copy) => {
                    return Err(self.fail(Error::protocol("a simple query started a COPY; use the COPY API")));
                }
                Err(e) => return Err(self.fail(Error::protocol(e.to_string()))),
            }
        };
        for notice in &collected.notices {
            tracing::info!("{}: {notice}", self.target);
        }
        match collected.error {
            Some(e) => Err(Error::new(ErrorKind::Db(Box::new(e))).at(Step::Query).on(&self.target)),
            None => Ok(collected),
        }
    }

    /// Runs a command that answers exactly one result set (`IDENTIFY_SYSTEM`, `SHOW …`,
    /// `CREATE_REPLICATION_SLOT …`), for `pg_wire::replication`'s typed readers
    /// (`IdentifySystem::from_result`, `Show::from_result`, …).
    pub async fn query_one(&mut self, sql: &str) -> Result<ResultSet, Error> {
        let collected = self.query(sql).await?;
        let n = collected.sets.len();
        match collected.sets.into_iter().next() {
            Some(set) if n == 1 => Ok(set),
            _ => Err(Error::protocol(format!("{}: expected one result set, got {n}", command_name(sql)))
                .at(Step::Query)
                .on(&self.target)),
        }
    }

    /// Sends a simple `Query` without waiting for anything: the caller then reads the answer
    /// frame by frame with [`Client::read_frame`] (a `BASE_BACKUP` answer goes to its decoder).
    pub async fn send_query(&mut self, sql: &str) -> Result<(), Error> {
        frontend::query(sql, &mut self.out).map_err(|e| Error::protocol(e.to_string()))?;
        self.flush().await
    }

    /// Sends raw `CopyData` (inside COPY BOTH, e.g. a standby status update).
    pub async fn send_copy_data(&mut self, data: &[u8]) -> Result<(), Error> {
        frontend::copy_data(data, &mut self.out).map_err(|e| Error::protocol(e.to_string()))?;
        self.flush().await
    }

    /// Sends whole frontend messages written by `encode` (e.g. a standby status update from
    /// `pg_wire::replication::StandbyStatusUpdate::encode`).
    pub async fn send_encoded(&mut self, encode: impl FnOnce(&mut BytesMut)) -> Result<(), Error> {
        encode(&mut self.out);
        self.flush().await
    }

    /// Sends `CopyDone`.
    pub async fn send_copy_done(&mut self) -> Result<(), Error> {
        frontend::copy_done(&mut self.out);
        self.flush().await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.out.is_empty() {
            return Ok(());
        }
        if let Some(tap) = &mut self.tap {
            tap.sent(&self.out);
        }
        let r = self.stream.write_all(&self.out).await;
        self.out.clear();
        r.map_err(|e| self.fail(Error::io(e).at(Step::Query)))?;
        self.stream.flush().await.map_err(|e| self.fail(Error::io(e).at(Step::Query)))
    }

    /// The next backend message, whole. Its body shares the read buffer (no copy).
    ///
    /// `ParameterStatus` messages are applied to [`Client::session`] and returned too.
    pub async fn read_frame(&mut self) -> Result<Frame, Error> {
        loop {
            if let Some(frame) =
                self.framer.next_frame().map_err(|e| self.fail(Error::protocol(e.to_string())))?
            {
                if frame.tag == b'S'
                    && let Ok(BackendMessage::ParameterStatus { name, value }) =
                        BackendMessage::parse(frame.clone())
                {
                    self.session.parameters.insert(name, value);
                }
                return Ok(frame);
            }
            // Read in bounded pieces: the buffer grows with the bytes received, never with a
            // length the server declared (issue 13: `wanted()` can be 1 GiB after 5 bytes).
            let want = self.framer.wanted().clamp(1, READ_CHUNK);
            let buf = self.framer.buffer_mut();
            let before = buf.len();
            let n = self.stream.read_into(buf, want).await.map_err(|e| self.fail(Error::io(e)))?;
            if n == 0 {
                return Err(self.fail(Error::new(ErrorKind::Closed)));
            }
            if let Some(tap) = &mut self.tap {
                tap.received(&self.framer.buffer_mut()[before..]);
            }
        }
    }

    /// A token that can cancel the running command from another task.
    pub fn cancel_token(&self) -> Option<CancelToken> {
        let key = self.session.backend_key.as_ref()?;
        Some(CancelToken { address: self.address.clone(), pid: key.pid, key: key.key.to_vec() })
    }

    /// Sends `Terminate` and closes the socket.
    pub async fn close(mut self) -> Result<(), Error> {
        frontend::terminate(&mut self.out);
        self.flush().await?;
        let _ = self.stream.shutdown().await;
        Ok(())
    }

    fn fail(&mut self, e: Error) -> Error {
        self.broken = true;
        e.on(&self.target)
    }

    /// Fails every later read that waits longer than `limit` for a byte from the server
    /// (`None`: wait forever, the default). The error is an IO error of kind
    /// [`std::io::ErrorKind::TimedOut`] that says how long nothing arrived; the session is then
    /// unusable. The clock runs only while a read waits, never while the caller holds the data.
    pub fn set_read_timeout(&mut self, limit: Option<std::time::Duration>) {
        self.stream.set_read_timeout(limit);
    }

    /// Whether a protocol or IO error made the session unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }
}

/// Cancels the command running on a session (a new connection sends `CancelRequest`).
#[derive(Clone, Debug)]
pub struct CancelToken {
    address: Address,
    pid: i32,
    key: Vec<u8>,
}

impl CancelToken {
    /// Asks the server to cancel the session's current command. The server does not answer;
    /// the session sees an error `57014` if the command was still running.
    pub async fn cancel(&self) -> Result<(), Error> {
        let mut stream = self.address.open().await?;
        let mut out = BytesMut::new();
        frontend::cancel_request(self.pid, &self.key, &mut out);
        stream.write_all(&out).await.map_err(Error::io)?;
        stream.shutdown().await.map_err(Error::io)?;
        Ok(())
    }
}

/// Where a target is reached, with what a reconnect needs.
#[derive(Clone, Debug)]
pub(crate) enum Address {
    /// Host, port, and the keepalive settings every socket to it gets.
    Tcp(String, u16, Keepalives),
    Unix(std::path::PathBuf),
}

impl Address {
    fn of(target: &Target, keepalives: Keepalives) -> Result<Self, Error> {
        match &target.host {
            HostSpec::Unix { dir } if dir.starts_with('@') => {
                Err(Error::new(ErrorKind::Unsupported("abstract Unix sockets are not supported".into())))
            }
            HostSpec::Unix { .. } => {
                Ok(Self::Unix(target.socket_path().expect("a Unix target has a socket path")))
            }
            HostSpec::Tcp { addr: Some(a), .. } => Ok(Self::Tcp(a.to_string(), target.port, keepalives)),
            HostSpec::Tcp { name: Some(n), addr: None } => Ok(Self::Tcp(n.clone(), target.port, keepalives)),
            HostSpec::Tcp { name: None, addr: None } => {
                Ok(Self::Tcp("localhost".into(), target.port, keepalives))
            }
        }
    }

    async fn open(&self) -> Result<Stream, Error> {
        match self {
            Self::Tcp(host, port, keepalives) => Stream::tcp(host, *port, keepalives).await,
            Self::Unix(path) => Stream::unix(path).await,
        }
        .map_err(|e| Error::io(e).at(Step::Connect))
    }
}

/// What TLS to attempt for a target.
enum TlsPlan {
    /// Never.
    Off,
    /// TLS, falling back to plaintext as libpq's `prefer` does.
    Prefer(Arc<rustls::ClientConfig>),
    /// Plaintext first, TLS if the server rejects it (`allow`).
    Allow(Arc<rustls::ClientConfig>),
    /// TLS or nothing.
    Require(Arc<rustls::ClientConfig>),
}

fn tls_plan(config: &ResolvedConfig, address: &Address) -> Result<TlsPlan, Error> {
    let settings = &config.tls;
    // libpq never uses TLS over a Unix socket, whatever sslmode says.
    if matches!(address, Address::Unix(_)) || settings.mode == SslMode::Disable {
        return Ok(TlsPlan::Off);
    }
    let root_cert = match &settings.root_cert {
        Some(RootCert::File(p)) => Some(p.clone()),
        Some(RootCert::System) => {
            return Err(Error::new(ErrorKind::Unsupported(
                "sslrootcert=system is not supported: give a PEM file of trusted roots".into(),
            ))
            .at(Step::Tls));
        }
        None => None,
    };
    let verification = match settings.mode {
        SslMode::VerifyFull => Verification::Full,
        SslMode::VerifyCa => Verification::Chain,
        // libpq's quirk: `require` with a root certificate file verifies the chain.
        SslMode::Require if root_cert.is_some() => Verification::Chain,
        _ => Verification::None,
    };
    let client_cert = match (&settings.cert, &settings.key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        _ => None,
    };
    if let Some(crl) = &settings.crl {
        // Ignoring it would accept a revoked certificate.
        return Err(Error::new(ErrorKind::Unsupported(format!(
            "certificate revocation lists (sslcrl {}) are not supported",
            crl.display()
        )))
        .at(Step::Tls));
    }
    if settings.key_password.is_some() {
        return Err(Error::new(ErrorKind::Unsupported(
            "encrypted client keys (sslpassword) are not supported: decrypt the key".into(),
        ))
        .at(Step::Tls));
    }
    let options = TlsOptions { verification, root_cert, client_cert, sni: settings.sni };
    let rustls_config = Arc::new(
        tls::client_config(&options).map_err(|e| Error::new(ErrorKind::Tls(e.to_string())).at(Step::Tls))?,
    );
    Ok(match settings.mode {
        SslMode::Disable => TlsPlan::Off,
        SslMode::Allow => TlsPlan::Allow(rustls_config),
        SslMode::Prefer => TlsPlan::Prefer(rustls_config),
        SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => TlsPlan::Require(rustls_config),
    })
}

async fn connect_target(config: &ResolvedConfig, target: &Target) -> Result<Client, Error> {
    let address = Address::of(target, config.keepalives)?;
    let shown = target.to_string();
    match tls_plan(config, &address)? {
        TlsPlan::Off => Ok(attempt(config, target, &address, None).await?),
        TlsPlan::Require(tls) => Ok(attempt(config, target, &address, Some((tls, true))).await?),
        TlsPlan::Prefer(tls) => match attempt(config, target, &address, Some((tls, false))).await {
            Ok(client) => Ok(client),
            // The server refused the TLS session at startup (a `hostnossl` rule) or the
            // handshake failed: libpq's `prefer` tries again in plaintext on a new connection.
            Err(e) if e.tls_was_used_and_failed => {
                tracing::debug!("{shown}: TLS attempt failed ({}), retrying without TLS", e.error);
                Ok(attempt(config, target, &address, None).await?)
            }
            Err(e) => Err(e.error),
        },
        TlsPlan::Allow(tls) => match attempt(config, target, &address, None).await {
            Ok(client) => Ok(client),
            // The server refused the plaintext session (a `hostssl` rule): retry with TLS.
            Err(e) if e.error.startup_failure().is_some() => {
                tracing::debug!("{shown}: plaintext attempt refused ({}), retrying with TLS", e.error);
                Ok(attempt(config, target, &address, Some((tls, true))).await?)
            }
            Err(e) => Err(e.error),
        },
    }
}

/// The result of one connection attempt.
struct AttemptError {
    error: Error,
    /// TLS was negotiated (or attempted) and the attempt failed in a way `prefer` retries.
    tls_was_used_and_failed: bool,
}

impl From<AttemptError> for Error {
    fn from(e: AttemptError) -> Self {
        e.error
    }
}

trait AttemptResult<T> {
    fn map_err_attempt(self) -> Result<T, AttemptError>;
}

impl<T> AttemptResult<T> for Result<T, Error> {
    fn map_err_attempt(self) -> Result<T, AttemptError> {
        self.map_err(|error| AttemptError { error, tls_was_used_and_failed: false })
    }
}

/// One connection: socket, optional TLS (`Some((config, required))`), startup.
async fn attempt(
    config: &ResolvedConfig,
    target: &Target,
    address: &Address,
    tls: Option<(Arc<rustls::ClientConfig>, bool)>,
) -> Result<Client, AttemptError> {
    let mut stream = address.open().await.map_err_attempt()?;
    let mut end_point = None;
    let mut tls_up = false;
    if let Some((tls_config, required)) = tls {
        let reply = stream
            .ssl_request()
            .await
            .map_err(|e| Error::new(ErrorKind::Tls(e.to_string())).at(Step::Tls))
            .map_err_attempt()?;
        match reply {
            SslReply::Accepted => {
                let name = target.tls_server_name().map(str::to_owned).unwrap_or_else(|| match address {
                    Address::Tcp(h, ..) => h.clone(),
                    Address::Unix(_) => "localhost".into(),
                });
                let server_name = tls::server_name(&name)
                    .map_err(|e| Error::new(ErrorKind::Tls(e.to_string())).at(Step::Tls))
                    .map_err_attempt()?;
                stream = stream.upgrade(tls_config, server_name).await.map_err(|e| AttemptError {
                    error: Error::new(ErrorKind::Tls(format!("TLS handshake failed: {e}"))).at(Step::Tls),
                    tls_was_used_and_failed: !required,
                })?;
                end_point = stream.peer_certificate().and_then(|c| tls::channel_binding_data(&c));
                tls_up = true;
            }
            SslReply::Refused if required => {
                return Err(Error::new(ErrorKind::Tls(
                    "server does not support SSL, but SSL was required".into(),
                ))
                .at(Step::Tls))
                .map_err_attempt();
            }
            SslReply::Refused => {}
        }
    }
    startup(config, target, stream, tls_up, end_point).await.map_err(|error| AttemptError {
        tls_was_used_and_failed: tls_up && error.startup_failure().is_some(),
        error,
    })
}

async fn startup(
    config: &ResolvedConfig,
    target: &Target,
    stream: Stream,
    tls_up: bool,
    end_point: Option<Vec<u8>>,
) -> Result<Client, Error> {
    let mut params = pg_wire::startup::StartupParams::new(config.user.clone());
    params.replication = match config.replication {
        pg_config::Replication::Off => Replication::Off,
        pg_config::Replication::Physical => Replication::Physical,
        pg_config::Replication::Database => Replication::Database,
    };
    for (key, value) in config.startup_params() {
        match key {
            "user" | "replication" => {}
            "database" => params.database = Some(value),
            "application_name" => params.application_name = Some(value),
            "options" => params.options = Some(value),
            other => params.extra.push((other.to_owned(), value)),
        }
    }
    if !params.extra.iter().any(|(k, _)| k == "client_encoding") {
        // Text results in UTF-8 whatever the server encoding (rows are handed out as &str).
        params.extra.push(("client_encoding".into(), "UTF8".into()));
    }
    let password = target
        .password()
        .or(config.password.as_ref())
        .filter(|p| !p.is_empty())
        .map(|p| pg_wire::startup::Password::new(p.expose().as_bytes().to_vec()));
    let policy = match config.tls.channel_binding {
        ChannelBinding::Disable => ChannelBindingPolicy::Disable,
        ChannelBinding::Prefer => ChannelBindingPolicy::Prefer,
        ChannelBinding::Require => ChannelBindingPolicy::Require,
    };
    let mut machine = Startup::new(params, password, policy);
    if tls_up {
        machine = machine.with_tls(end_point);
    }
    let mut client = Client {
        stream,
        framer: Framer::new(machine.frame_limit()),
        out: BytesMut::with_capacity(1024),
        session: Session {
            backend_key: None,
            parameters: Default::default(),
            transaction_status: pg_wire::message::TransactionStatus::Idle,
            auth_method: pg_wire::startup::AuthMethod::None,
            negotiated: None,
        },
        target: target.to_string(),
        tap: None,
        broken: false,
        address: Address::of(target, config.keepalives)?,
    };
    // Too many connections or WAL senders (class 53, e.g. 53300) and a server that cannot take
    // connections yet (57P03) are not authentication failures: say so.
    let auth = |e: StartupError| {
        let step = match e.db_error() {
            Some(db) if db.code.starts_with("53") || db.code == "57P03" => Step::Startup,
            _ => Step::Authentication,
        };
        Error::new(ErrorKind::Startup(e)).at(step)
    };
    machine.start(&mut client.out).map_err(auth)?;
    client.flush().await.map_err(|e| e.at(Step::Authentication))?;
    loop {
        let frame = client.read_frame().await.map_err(|e| e.at(Step::Authentication))?;
        let event = machine.handle(frame, &mut client.out).map_err(auth)?;
        client.flush().await.map_err(|e| e.at(Step::Authentication))?;
        match event {
            StartupEvent::Continue | StartupEvent::Authenticated(_) => {}
            StartupEvent::Notice(n) => tracing::info!("{}: {}", client.target, n),
            StartupEvent::Ready(session) => {
                client.session = session;
                client.framer.set_limit(MAX_MESSAGE_LEN);
                return Ok(client);
            }
        }
    }
}
