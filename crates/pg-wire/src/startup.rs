//! The startup and authentication exchange, as a sans-IO state machine.
//!
//! Implements the client side of
//! <https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP> and the
//! SASL flow of <https://www.postgresql.org/docs/current/sasl-authentication.html>, with libpq's
//! rules for `channel_binding` (`fe-auth.c`: `pg_SASL_init`, `check_expected_areq`).
//!
//! The caller owns the socket: it calls [`Startup::start`] and sends what was written, then
//! feeds every backend [`Frame`] to [`Startup::handle`], sending whatever `handle` appends to
//! `out` after each call, until [`StartupEvent::Ready`]. No clock, no randomness of our own (the
//! SCRAM nonce comes from postgres-protocol), no IO.
//!
//! The TLS layer is also the caller's: [`ssl_request`] writes the SSLRequest and
//! [`SslResponse::parse`] interprets the single unframed reply byte.

use std::collections::BTreeMap;
use std::fmt;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};

use crate::error::DbError;
use crate::frame::{Frame, STARTUP_MESSAGE_LEN};
use crate::message::TransactionStatus;
use crate::message::frontend::{self, EncodeError};
use crate::message::{
    Authentication, BackendKeyData, BackendMessage, MessageError, NegotiateProtocolVersion,
};

/// The protocol version we request: 3.0 (`196608`). 3.2 (PG 18) is not requested, so the
/// cancel key is 4 bytes.
pub const PROTOCOL_VERSION_3_0: i32 = 0x0003_0000;

/// The `replication` startup parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Replication {
    /// A normal backend (the parameter is not sent).
    #[default]
    Off,
    /// `replication=true`: a physical walsender (replication commands only).
    Physical,
    /// `replication=database`: a logical walsender (SQL and replication commands).
    Database,
}

/// The StartupMessage parameters.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct StartupParams {
    /// `user` (required by the server).
    pub user: String,
    /// `database`; the server defaults it to the user name. Ignored by physical walsenders.
    pub database: Option<String>,
    /// `replication`.
    pub replication: Replication,
    /// `application_name`, shown in `pg_stat_activity` / `pg_stat_replication`.
    pub application_name: Option<String>,
    /// `options`: command-line style settings, e.g. `-c statement_timeout=0`.
    pub options: Option<String>,
    /// Any other run-time parameters, sent as given (e.g. `client_encoding`).
    pub extra: Vec<(String, String)>,
}

impl StartupParams {
    /// Parameters for `user` with everything else at its default.
    pub fn new(user: impl Into<String>) -> Self {
        Self { user: user.into(), ..Self::default() }
    }

    fn pairs(&self) -> Vec<(&str, &str)> {
        let mut v = vec![("user", self.user.as_str())];
        if let Some(db) = &self.database {
            v.push(("database", db));
        }
        match self.replication {
            Replication::Off => {}
            Replication::Physical => v.push(("replication", "true")),
            Replication::Database => v.push(("replication", "database")),
        }
        if let Some(a) = &self.application_name {
            v.push(("application_name", a));
        }
        if let Some(o) = &self.options {
            v.push(("options", o));
        }
        v.extend(self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        v
    }
}

/// A password. Its `Debug` never shows it, and its bytes are overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(Vec<u8>);

impl Password {
    /// Wraps a password (any bytes; PostgreSQL passwords need not be UTF-8).
    pub fn new(password: impl Into<Vec<u8>>) -> Self {
        Self(password.into())
    }

    /// The password bytes, to hand to an authenticator.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        // Best effort (no zeroize dependency): black_box keeps the writes from being elided.
        self.0.fill(0);
        std::hint::black_box(&self.0);
    }
}

/// libpq's `channel_binding` setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ChannelBindingPolicy {
    /// Never use channel binding.
    Disable,
    /// Use SCRAM-SHA-256-PLUS when TLS is up, binding data exists and the server offers it.
    #[default]
    Prefer,
    /// Fail unless the server authenticates us with SCRAM-SHA-256-PLUS.
    Require,
}

/// How the server authenticated us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// No password was asked (`trust`, `peer`, `cert`, …).
    None,
    /// Clear-text password (`password`).
    Cleartext,
    /// `md5`.
    Md5,
    /// SCRAM-SHA-256 without channel binding.
    ScramSha256,
    /// SCRAM-SHA-256-PLUS with `tls-server-end-point` binding.
    ScramSha256Plus,
}

/// What the server told us during startup, returned with [`StartupEvent::Ready`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// BackendKeyData, for cancel requests (absent on some poolers and walsenders before 13).
    pub backend_key: Option<BackendKeyData>,
    /// Every ParameterStatus received, last value wins.
    pub parameters: BTreeMap<String, String>,
    /// The status of the first ReadyForQuery.
    pub transaction_status: TransactionStatus,
    /// How we were authenticated.
    pub auth_method: AuthMethod,
    /// A NegotiateProtocolVersion the server sent, if any.
    pub negotiated: Option<NegotiateProtocolVersion>,
}

impl Session {
    /// A ParameterStatus value.
    pub fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters.get(name).map(String::as_str)
    }

    /// The major version from `server_version`'s leading integer: `15.18 (Debian …)` → 15,
    /// `16beta1` → 16, `19devel` → 19. For 9.x and older this is 9 (the caller should use
    /// `server_version_num` if it cares).
    pub fn server_major(&self) -> Option<u32> {
        server_major(self.parameter("server_version")?)
    }
}

/// The major version from a `server_version` string (see [`Session::server_major`]).
pub fn server_major(version: &str) -> Option<u32> {
    let digits = version.bytes().take_while(u8::is_ascii_digit).count();
    version[..digits].parse().ok()
}

/// What [`Startup::handle`] reports.
// `Ready` is large, but it is returned once per connection: boxing it would only add noise.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupEvent {
    /// Nothing to report; send `out` if it grew and feed the next frame.
    Continue,
    /// A NoticeResponse (e.g. a warning about an expiring password).
    Notice(DbError),
    /// Authentication succeeded (AuthenticationOk); parameters and ReadyForQuery follow.
    Authenticated(AuthMethod),
    /// The first ReadyForQuery: the connection is ready for queries.
    Ready(Session),
}

/// Why a server's FATAL during startup happened, from its SQLSTATE and reporting routine (the
/// `R` field is not translated, unlike the message text).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartupFailure {
    /// `28P01`: wrong password (also what a missing role looks like with password methods).
    PasswordFailed,
    /// `28000` from `ClientAuthentication`: no `pg_hba.conf` line matches, or one rejects.
    HbaRejected,
    /// `28000` from `InitializeSessionUserId`: the role does not exist (trust/peer methods).
    RoleDoesNotExist,
    /// Any other `28000` (role cannot log in, lacks REPLICATION, SCRAM negotiation error, …).
    InvalidAuthorization,
    /// `3D000`: the database does not exist.
    DatabaseDoesNotExist,
    /// `53300`: too many connections or walsenders.
    TooManyConnections,
    /// `57P03`: the server is starting up, shutting down or in recovery.
    CannotConnectNow,
    /// Anything else.
    Other,
}

impl StartupFailure {
    /// Classifies a server error.
    pub fn classify(e: &DbError) -> Self {
        let routine = e.routine.as_deref().unwrap_or("");
        match e.code.as_str() {
            "28P01" => Self::PasswordFailed,
            "28000" if routine == "ClientAuthentication" || e.message.contains("pg_hba.conf") => {
                Self::HbaRejected
            }
            "28000" if routine == "InitializeSessionUserId" || e.message.starts_with("role \"") => {
                Self::RoleDoesNotExist
            }
            "28000" => Self::InvalidAuthorization,
            "3D000" => Self::DatabaseDoesNotExist,
            "53300" => Self::TooManyConnections,
            "57P03" => Self::CannotConnectNow,
            _ => Self::Other,
        }
    }
}

/// A failed startup.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The server sent an ErrorResponse (always FATAL during startup).
    #[error("connection refused by the server: {0}")]
    Server(Box<DbError>),
    /// The server asked for a password and none was given (libpq: "fe_sendauth: no password
    /// supplied").
    #[error(
        "the server requested {method} password authentication for user \"{user}\" but no password was supplied"
    )]
    PasswordRequired {
        /// `cleartext`, `MD5` or `SCRAM-SHA-256`.
        method: &'static str,
        /// The startup user.
        user: String,
    },
    /// `channel_binding=require` could not be honoured.
    #[error("channel binding required, but {0}")]
    ChannelBindingRequired(&'static str),
    /// The server offered SCRAM-SHA-256-PLUS on a connection without TLS: a sign of a
    /// man-in-the-middle stripping TLS.
    #[error("server offered SCRAM-SHA-256-PLUS authentication over a non-SSL connection")]
    PlusWithoutTls,
    /// None of the SASL mechanisms offered is supported.
    #[error("none of the server's SASL authentication mechanisms ({offered}) are supported")]
    NoSaslMechanism {
        /// The offered mechanisms, comma-separated.
        offered: String,
    },
    /// The SCRAM exchange failed on our side (bad nonce, iterations, salt, server signature).
    #[error("SCRAM authentication failed: {0}")]
    Scram(String),
    /// A malformed message.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A message that is valid but not expected at this point.
    #[error("unexpected {message} message during {state}")]
    Unexpected {
        /// The message's name.
        message: &'static str,
        /// The phase we were in.
        state: &'static str,
    },
    /// A protocol violation not tied to one message's layout.
    #[error("protocol violation during startup: {0}")]
    Protocol(&'static str),
    /// A parameter or password that cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The state machine was used after it finished or failed.
    #[error("the startup exchange is already over")]
    Finished,
}

impl StartupError {
    /// The server's error, if this is one.
    pub fn db_error(&self) -> Option<&DbError> {
        match self {
            Self::Server(e) => Some(e),
            _ => None,
        }
    }

    /// The server's SQLSTATE, if this is a server error.
    pub fn sqlstate(&self) -> Option<&str> {
        self.db_error().map(|e| e.code.as_str())
    }

    /// The classification of a server error.
    pub fn failure(&self) -> Option<StartupFailure> {
        self.db_error().map(StartupFailure::classify)
    }
}

/// The single-byte reply to an SSLRequest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslResponse {
    /// `S`: start the TLS handshake now.
    Accepted,
    /// `N`: the server does not want TLS on this connection.
    Refused,
}

/// A reply to an SSLRequest that is neither `S` nor `N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SslResponseError {
    /// `E`: the server answered with an ErrorResponse; it predates SSL negotiation or rejects
    /// the request. libpq treats this as a failure too.
    #[error(
        "the server answered the SSL request with an error message (it does not support SSL negotiation)"
    )]
    ServerError,
    /// Any other byte.
    #[error("invalid reply to the SSL request: byte 0x{0:02x} (expected 'S' or 'N')")]
    Invalid(u8),
}

impl SslResponse {
    /// Interprets the reply byte. It must be read alone from the raw socket: any byte buffered
    /// after an `S` before the TLS handshake is an injection attempt (CVE-2021-23222) and the
    /// IO layer must refuse it.
    pub fn parse(byte: u8) -> Result<Self, SslResponseError> {
        match byte {
            b'S' => Ok(Self::Accepted),
            b'N' => Ok(Self::Refused),
            b'E' => Err(SslResponseError::ServerError),
            b => Err(SslResponseError::Invalid(b)),
        }
    }
}

/// Writes an SSLRequest. Never a GSSENCRequest: see `protocol.md` §2.2.
pub fn ssl_request(out: &mut BytesMut) {
    frontend::ssl_request(out);
}

/// Writes a StartupMessage for protocol 3.0 with these parameters.
pub fn startup_message(params: &StartupParams, out: &mut BytesMut) -> Result<(), EncodeError> {
    let pairs = params.pairs();
    for (k, v) in &pairs {
        if k.is_empty() {
            return Err(EncodeError::Nul { what: "empty startup parameter name" });
        }
        if k.contains('\0') || v.contains('\0') {
            return Err(EncodeError::Nul { what: "startup parameter" });
        }
    }
    postgres_protocol::message::frontend::startup_message(pairs, out)
        .map_err(|_| EncodeError::TooLong { what: "startup message", len: 0 })
}

enum State {
    Initial,
    /// StartupMessage sent; waiting for an authentication request.
    Authenticating,
    /// SASLInitialResponse sent; waiting for SASLContinue.
    SaslContinue(Box<ScramSha256>, AuthMethod),
    /// SASLResponse sent; waiting for SASLFinal.
    SaslFinal(Box<ScramSha256>, AuthMethod),
    /// SASLFinal verified; waiting for AuthenticationOk.
    SaslDone(AuthMethod),
    /// A password was sent; waiting for AuthenticationOk (or an error).
    PasswordSent(AuthMethod),
    /// AuthenticationOk received; collecting parameters until ReadyForQuery.
    Authenticated,
    Done,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            Self::Initial => "startup (before the StartupMessage was sent)",
            Self::Authenticating => "authentication",
            Self::SaslContinue(..) => "SASL authentication (waiting for the server-first message)",
            Self::SaslFinal(..) => "SASL authentication (waiting for the server-final message)",
            Self::SaslDone(_) => "SASL authentication (waiting for AuthenticationOk)",
            Self::PasswordSent(_) => "password authentication",
            Self::Authenticated => "startup (after authentication)",
            Self::Done => "startup (already finished)",
        }
    }
}

/// The startup/authentication state machine. See the crate docs for a full exchange.
pub struct Startup {
    params: StartupParams,
    password: Option<Password>,
    policy: ChannelBindingPolicy,
    tls: bool,
    tls_end_point: Option<Vec<u8>>,
    state: State,
    method: AuthMethod,
    backend_key: Option<BackendKeyData>,
    parameters: BTreeMap<String, String>,
    negotiated: Option<NegotiateProtocolVersion>,
}

impl fmt::Debug for Startup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Startup")
            .field("params", &self.params)
            .field("password", &self.password)
            .field("policy", &self.policy)
            .field("tls", &self.tls)
            .field("state", &self.state.name())
            .finish_non_exhaustive()
    }
}

impl Startup {
    /// A state machine for a connection without TLS.
    pub fn new(params: StartupParams, password: Option<Password>, policy: ChannelBindingPolicy) -> Self {
        Self {
            params,
            password,
            policy,
            tls: false,
            tls_end_point: None,
            state: State::Initial,
            method: AuthMethod::None,
            backend_key: None,
            parameters: BTreeMap::new(),
            negotiated: None,
        }
    }

    /// Declares that TLS is up, with the `tls-server-end-point` hash of the server certificate
    /// (RFC 5929 §4.1, computed by the IO layer), or `None` when the certificate's signature
    /// algorithm has no defined binding (Ed25519, RSA-PSS without parameters).
    pub fn with_tls(mut self, tls_server_end_point: Option<Vec<u8>>) -> Self {
        self.tls = true;
        self.tls_end_point = tls_server_end_point;
        self
    }

    /// The largest message body the framer should accept during startup.
    pub fn frame_limit(&self) -> usize {
        STARTUP_MESSAGE_LEN
    }

    /// Writes the StartupMessage. Call once, before feeding any frame.
    pub fn start(&mut self, out: &mut BytesMut) -> Result<(), StartupError> {
        if !matches!(self.state, State::Initial) {
            return Err(StartupError::Protocol("start() called twice"));
        }
        startup_message(&self.params, out)?;
        self.state = State::Authenticating;
        Ok(())
    }

    /// Handles one backend frame, appending any reply to `out`.
    ///
    /// After an error or [`StartupEvent::Ready`] the machine is finished; further calls return
    /// [`StartupError::Finished`].
    pub fn handle(&mut self, frame: Frame, out: &mut BytesMut) -> Result<StartupEvent, StartupError> {
        if matches!(self.state, State::Done) {
            return Err(StartupError::Finished);
        }
        if matches!(self.state, State::Initial) {
            return Err(StartupError::Protocol("a frame arrived before start() was called"));
        }
        let r = self.step(frame, out);
        if r.is_err() {
            self.state = State::Done;
        }
        r
    }

    fn require_password(&self, method: &'static str) -> Result<&Password, StartupError> {
        self.password
            .as_ref()
            .ok_or_else(|| StartupError::PasswordRequired { method, user: self.params.user.clone() })
    }

    fn step(&mut self, frame: Frame, out: &mut BytesMut) -> Result<StartupEvent, StartupError> {
        let msg = BackendMessage::parse(frame)?;
        match msg {
            BackendMessage::ErrorResponse(e) => return Err(StartupError::Server(Box::new(e))),
            BackendMessage::NoticeResponse(n) => return Ok(StartupEvent::Notice(n)),
            BackendMessage::NegotiateProtocolVersion(v) => {
                // We ask for 3.0 with no `_pq_` options: nothing to downgrade, but record it.
                if v.newest_minor < 0 {
                    return Err(StartupError::Protocol(
                        "NegotiateProtocolVersion with a negative minor version",
                    ));
                }
                self.negotiated = Some(v);
                return Ok(StartupEvent::Continue);
            }
            _ => {}
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Authenticating => match msg {
                BackendMessage::Authentication(a) => self.on_auth_request(a, out),
                other => Err(self.unexpected_in("authentication", &other)),
            },
            State::PasswordSent(method) => match msg {
                BackendMessage::Authentication(Authentication::Ok) => self.authenticated(method),
                other => Err(self.unexpected_in("password authentication", &other)),
            },
            State::SaslContinue(mut scram, method) => match msg {
                BackendMessage::Authentication(Authentication::SaslContinue(data)) => {
                    scram.update(&data).map_err(|e| StartupError::Scram(e.to_string()))?;
                    frontend::sasl_response(scram.message(), out)?;
                    self.state = State::SaslFinal(scram, method);
                    Ok(StartupEvent::Continue)
                }
                BackendMessage::Authentication(Authentication::Ok) => {
                    Err(StartupError::Protocol("AuthenticationOk before the SASL exchange completed"))
                }
                other => Err(self.unexpected_in("SASL authentication", &other)),
            },
            State::SaslFinal(mut scram, method) => match msg {
                BackendMessage::Authentication(Authentication::SaslFinal(data)) => {
                    scram.finish(&data).map_err(|e| {
                        StartupError::Scram(format!("{e} (the server could not prove it knows the password)"))
                    })?;
                    self.state = State::SaslDone(method);
                    Ok(StartupEvent::Continue)
                }
                BackendMessage::Authentication(Authentication::Ok) => {
                    Err(StartupError::Protocol("AuthenticationOk before the SASL exchange completed"))
                }
                other => Err(self.unexpected_in("SASL authentication", &other)),
            },
            State::SaslDone(method) => match msg {
                BackendMessage::Authentication(Authentication::Ok) => self.authenticated(method),
                other => Err(self.unexpected_in("SASL authentication", &other)),
            },
            State::Authenticated => match msg {
                BackendMessage::ParameterStatus { name, value } => {
                    self.parameters.insert(name, value);
                    self.state = State::Authenticated;
                    Ok(StartupEvent::Continue)
                }
                BackendMessage::BackendKeyData(k) => {
                    if k.key.len() != 4 {
                        return Err(StartupError::Protocol(
                            "BackendKeyData key is not 4 bytes long although protocol 3.0 was requested",
                        ));
                    }
                    if self.backend_key.replace(k).is_some() {
                        return Err(StartupError::Protocol("BackendKeyData sent twice"));
                    }
                    self.state = State::Authenticated;
                    Ok(StartupEvent::Continue)
                }
                BackendMessage::ReadyForQuery(status) => Ok(StartupEvent::Ready(Session {
                    backend_key: self.backend_key.take(),
                    parameters: std::mem::take(&mut self.parameters),
                    transaction_status: status,
                    auth_method: self.method,
                    negotiated: self.negotiated.take(),
                })),
                other => Err(self.unexpected_in("startup (after authentication)", &other)),
            },
            State::Initial | State::Done => Err(StartupError::Finished),
        }
    }

    fn unexpected_in(&self, state: &'static str, msg: &BackendMessage) -> StartupError {
        StartupError::Unexpected { message: msg.name(), state }
    }

    fn authenticated(&mut self, method: AuthMethod) -> Result<StartupEvent, StartupError> {
        if self.policy == ChannelBindingPolicy::Require && method != AuthMethod::ScramSha256Plus {
            return Err(StartupError::ChannelBindingRequired(
                "server authenticated client without channel binding",
            ));
        }
        self.method = method;
        self.state = State::Authenticated;
        Ok(StartupEvent::Authenticated(method))
    }

    fn on_auth_request(
        &mut self,
        a: Authentication,
        out: &mut BytesMut,
    ) -> Result<StartupEvent, StartupError> {
        let require = self.policy == ChannelBindingPolicy::Require;
        match a {
            Authentication::Ok => self.authenticated(AuthMethod::None),
            Authentication::CleartextPassword => {
                if require {
                    return Err(StartupError::ChannelBindingRequired(
                        "server requested a cleartext password, which has no channel binding",
                    ));
                }
                let pw = self.require_password("cleartext")?;
                frontend::password(pw.expose(), out)?;
                self.state = State::PasswordSent(AuthMethod::Cleartext);
                Ok(StartupEvent::Continue)
            }
            Authentication::Md5Password(salt) => {
                if require {
                    return Err(StartupError::ChannelBindingRequired(
                        "server requested MD5 password authentication, which has no channel binding",
                    ));
                }
                let pw = self.require_password("MD5")?;
                let hashed = md5_hash(self.params.user.as_bytes(), pw.expose(), salt);
                frontend::password(hashed.as_bytes(), out)?;
                self.state = State::PasswordSent(AuthMethod::Md5);
                Ok(StartupEvent::Continue)
            }
            Authentication::Sasl(mechs) => self.sasl_init(&mechs, out),
            Authentication::SaslContinue(_) | Authentication::SaslFinal(_) => {
                Err(StartupError::Protocol("SASL data before the SASL exchange started"))
            }
        }
    }

    /// Mechanism choice as in libpq's `pg_SASL_init`.
    fn sasl_init(&mut self, mechs: &[String], out: &mut BytesMut) -> Result<StartupEvent, StartupError> {
        let offers_plus = mechs.iter().any(|m| m == sasl::SCRAM_SHA_256_PLUS);
        let offers_plain = mechs.iter().any(|m| m == sasl::SCRAM_SHA_256);
        if offers_plus && !self.tls {
            return Err(StartupError::PlusWithoutTls);
        }
        let binding_usable =
            self.tls && self.tls_end_point.is_some() && self.policy != ChannelBindingPolicy::Disable;
        let (mechanism, binding, method) = if offers_plus && binding_usable {
            let cb = self.tls_end_point.clone().unwrap_or_default();
            (sasl::SCRAM_SHA_256_PLUS, ChannelBinding::tls_server_end_point(cb), AuthMethod::ScramSha256Plus)
        } else if offers_plain {
            if self.policy == ChannelBindingPolicy::Require {
                return Err(StartupError::ChannelBindingRequired(if !self.tls {
                    "the connection does not use TLS"
                } else if self.tls_end_point.is_none() {
                    "the server certificate's signature algorithm has no tls-server-end-point binding"
                } else {
                    "the server does not offer SCRAM-SHA-256-PLUS"
                }));
            }
            // `y,,` ("client supports binding, thinks the server does not") only when we could
            // bind and the server did not offer PLUS; sending it when PLUS was offered is a
            // FATAL 28000 (downgrade detection), so `n,,` then.
            let cb = if binding_usable && !offers_plus {
                ChannelBinding::unrequested()
            } else {
                ChannelBinding::unsupported()
            };
            (sasl::SCRAM_SHA_256, cb, AuthMethod::ScramSha256)
        } else {
            return Err(StartupError::NoSaslMechanism { offered: mechs.join(", ") });
        };
        let pw = self.require_password("SCRAM-SHA-256")?;
        let scram = ScramSha256::new(pw.expose(), binding);
        frontend::sasl_initial_response(mechanism, scram.message(), out)?;
        self.state = State::SaslContinue(Box::new(scram), method);
        Ok(StartupEvent::Continue)
    }
}

#[cfg(test)]
mod tests;
