//! Resolution: explicit settings > `PG*` environment variables > libpq's defaults, then the
//! derived values a connection needs (targets, startup parameters, TLS settings, password).
//!
//! Order and rules follow `conninfo_add_defaults` and `pqConnectOptions2` in
//! src/interfaces/libpq/fe-connect.c, libpq-envars.html and libpq-ssl.html §34.19.5 (the
//! `~/.postgresql/` client files).

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::{Config, keyword_string, quote_conninfo_value};
use crate::env::{DEFAULT_HOST, DEFAULT_PORT, Env};
use crate::error::{ConfigError, Source};
use crate::param::{self, Param, STARTUP_ENV_OPTIONS, UNSUPPORTED_ENV_VARS};
use crate::passfile::{self, Lookup, escape_passfile_field};
use crate::secret::Password;
use crate::values::{
    ChannelBinding, GssEncMode, Replication, SslMode, SslNegotiation, TargetSessionAttrs, TlsVersion,
};

/// Every environment variable libpq reads. Before handing [`ResolvedConfig::to_libpq_env`]
/// to a child process, remove these from its inherited environment so nothing else leaks in.
pub const LIBPQ_ENV_VARS: &[&str] = &[
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGDATABASE",
    "PGUSER",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGCHANNELBINDING",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGAPPNAME",
    "PGSSLMODE",
    "PGREQUIRESSL",
    "PGSSLNEGOTIATION",
    "PGSSLCOMPRESSION",
    "PGSSLCERT",
    "PGSSLKEY",
    "PGSSLCERTMODE",
    "PGSSLROOTCERT",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLSNI",
    "PGREQUIREPEER",
    "PGREQUIREAUTH",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMAXPROTOCOLVERSION",
    "PGGSSENCMODE",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGCONNECT_TIMEOUT",
    "PGCLIENTENCODING",
    "PGTARGETSESSIONATTRS",
    "PGLOADBALANCEHOSTS",
    "PGMINPROTOCOLVERSION",
    "PGMAXPROTOCOLVERSION",
    "PGDATESTYLE",
    "PGTZ",
    "PGGEQO",
    "PGSYSCONFDIR",
    "PGLOCALEDIR",
];

/// Something worth telling the user that does not stop the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// The password file is readable or writable by group or others: ignored, as libpq does.
    PassfileInsecure {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The password file is not a regular file: ignored.
    PassfileNotPlainFile {
        /// The file.
        path: PathBuf,
    },
    /// A password file line longer than [`crate::MAX_PASSFILE_LINE`] was skipped.
    PassfileLineTooLong {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// The matching password file entry is not UTF-8: ignored.
    PassfileNotUtf8 {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A libpq environment variable for an option this client does not implement is set.
    IgnoredEnvVar {
        /// The variable.
        name: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::PassfileInsecure { path, mode } => write!(
                f,
                "password file \"{}\" has group or world access (mode {mode:04o}); permissions should be \
                 u=rw (0600) or less: ignored",
                path.display()
            ),
            Warning::PassfileNotPlainFile { path } => {
                write!(f, "password file \"{}\" is not a plain file: ignored", path.display())
            }
            Warning::PassfileLineTooLong { path, line } => {
                write!(f, "password file \"{}\": line {line} is too long: skipped", path.display())
            }
            Warning::PassfileNotUtf8 { path, line } => {
                write!(
                    f,
                    "password file \"{}\": the password on line {line} is not UTF-8: ignored",
                    path.display()
                )
            }
            Warning::IgnoredEnvVar { name } => {
                write!(f, "environment variable {name} is set but not supported by this client: ignored")
            }
        }
    }
}

/// Where one target is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostSpec {
    /// TCP. `name` is resolved unless `addr` is given; `name` is what TLS verifies and what
    /// SNI sends.
    Tcp {
        /// Host name or textual address (`host`), if given.
        name: Option<String>,
        /// Numeric address (`hostaddr`), if given: connect here without name resolution.
        addr: Option<IpAddr>,
    },
    /// A Unix-domain socket in this directory (a `host` starting with `/`, or `@` for Linux's
    /// abstract namespace).
    Unix {
        /// The directory (or `@name`).
        dir: String,
    },
}

/// One server to try, in order: libpq tries each until one accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Target {
    /// How to reach it.
    pub host: HostSpec,
    /// Its port (for a socket: the number in the socket file name).
    pub port: u16,
    password: Option<Password>,
}

impl Target {
    /// The socket file, `<dir>/.s.PGSQL.<port>`, for a Unix-socket target.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            HostSpec::Unix { dir } => Some(Path::new(dir).join(format!(".s.PGSQL.{}", self.port))),
            HostSpec::Tcp { .. } => None,
        }
    }

    /// The name TLS checks the certificate against and sends as SNI (`None` when only
    /// `hostaddr` was given, or for a socket).
    pub fn tls_server_name(&self) -> Option<&str> {
        match &self.host {
            HostSpec::Tcp { name, .. } => name.as_deref(),
            HostSpec::Unix { .. } => None,
        }
    }

    /// The password for this target: the explicit one, else the passfile's entry for it.
    pub fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// The `host` list entry libpq would show for this target (name, address or directory).
    pub fn host_text(&self) -> String {
        match &self.host {
            HostSpec::Tcp { name: Some(n), .. } => n.clone(),
            HostSpec::Tcp { name: None, addr: Some(a) } => a.to_string(),
            HostSpec::Tcp { name: None, addr: None } => String::new(),
            HostSpec::Unix { dir } => dir.clone(),
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("password", &self.password)
            .finish()
    }
}

/// `socket "/var/run/postgresql/.s.PGSQL.5432"` or `host "db", port 5432` (as libpq's
/// connection failure messages).
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.host, self.socket_path()) {
            (HostSpec::Unix { .. }, Some(p)) => write!(f, "socket \"{}\"", p.display()),
            (HostSpec::Tcp { name: Some(n), addr: Some(a) }, _) => {
                write!(f, "host \"{n}\" ({a}), port {}", self.port)
            }
            _ => write!(f, "host \"{}\", port {}", self.host_text(), self.port),
        }
    }
}

/// The trusted roots for server certificate verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootCert {
    /// A PEM file of certificates.
    File(PathBuf),
    /// `sslrootcert=system`: the operating system's trust store (forces verify-full).
    System,
}

/// Everything the TLS layer needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// `sslmode`.
    pub mode: SslMode,
    /// `sslnegotiation`.
    pub negotiation: SslNegotiation,
    /// Client certificate (`sslcert`, else `~/.postgresql/postgresql.crt` if it exists).
    pub cert: Option<PathBuf>,
    /// Client key (`sslkey`, else `~/.postgresql/postgresql.key` if it exists).
    pub key: Option<PathBuf>,
    /// Passphrase of an encrypted key.
    pub key_password: Option<Password>,
    /// Trusted roots (`sslrootcert`, else `~/.postgresql/root.crt` if it exists).
    pub root_cert: Option<RootCert>,
    /// Revocation list (`sslcrl`, else `~/.postgresql/root.crl` if it exists).
    pub crl: Option<PathBuf>,
    /// Send SNI (`sslsni`, default true).
    pub sni: bool,
    /// Minimum TLS version (default TLS 1.2).
    pub min_version: Option<TlsVersion>,
    /// Maximum TLS version.
    pub max_version: Option<TlsVersion>,
    /// `channel_binding`.
    pub channel_binding: ChannelBinding,
}

/// TCP keepalive settings (libpq-connect.html, `keepalives*`, `tcp_user_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalives {
    /// Keepalives enabled (default true).
    pub enabled: bool,
    /// Idle time before the first probe.
    pub idle: Option<Duration>,
    /// Interval between probes.
    pub interval: Option<Duration>,
    /// Probes before the connection is dead.
    pub count: Option<u32>,
    /// `TCP_USER_TIMEOUT`.
    pub tcp_user_timeout: Option<Duration>,
}

/// A configuration with the environment and defaults applied and every value checked: what
/// a connection (or a child libpq process) actually uses.
#[derive(Clone, Debug)]
pub struct ResolvedConfig {
    /// The servers to try, in order (at least one).
    pub targets: Vec<Target>,
    /// The user name.
    pub user: String,
    /// The database name (defaults to the user name).
    pub dbname: String,
    /// The explicit password (connection string or `PGPASSWORD`), before any passfile.
    pub password: Option<Password>,
    /// The password file consulted (`passfile`, `PGPASSFILE` or `~/.pgpass`), if any.
    pub passfile: Option<PathBuf>,
    /// `replication`.
    pub replication: Replication,
    /// `application_name`.
    pub application_name: Option<String>,
    /// `fallback_application_name`.
    pub fallback_application_name: Option<String>,
    /// `options`.
    pub options: Option<String>,
    /// `client_encoding`.
    pub client_encoding: Option<String>,
    /// `connect_timeout` (`None`: wait forever; at least 2 s, as libpq).
    pub connect_timeout: Option<Duration>,
    /// TLS settings.
    pub tls: TlsSettings,
    /// `target_session_attrs`.
    pub target_session_attrs: TargetSessionAttrs,
    /// Keepalives.
    pub keepalives: Keepalives,
    /// `PGDATESTYLE`, `PGTZ`, `PGGEQO` as startup parameters (libpq's environment options).
    pub env_startup_options: Vec<(&'static str, String)>,
    /// What the caller may want to log (insecure passfile, ignored variables).
    pub warnings: Vec<Warning>,
}

impl Config {
    /// Resolves with the real process environment ([`Env::process`]).
    pub fn resolve(&self) -> Result<ResolvedConfig, ConfigError> {
        self.resolve_with(&Env::process())
    }

    /// Resolves: explicit settings, else the `PG*` variable of `env`, else libpq's default;
    /// then validates the combination and looks the password up in the passfile when none
    /// was given.
    pub fn resolve_with(&self, env: &Env) -> Result<ResolvedConfig, ConfigError> {
        let mut warnings = Vec::new();
        let mut m = self.clone();
        for &p in Param::ALL {
            if m.is_set(p) {
                continue;
            }
            if let Some(var) = p.env_var()
                && let Some(v) = env.var(var)
            {
                m.set_from(p, v.to_owned(), &Source::Env(var))?;
            }
        }
        // Deprecated PGREQUIRESSL: "1..." means sslmode=require when sslmode is still unset.
        if !m.is_set(Param::SslMode) && env.var("PGREQUIRESSL").is_some_and(|v| v.starts_with('1')) {
            m.set_sslmode(SslMode::Require);
        }
        for name in UNSUPPORTED_ENV_VARS.iter().filter(|v| env.var(v).is_some()) {
            warnings.push(Warning::IgnoredEnvVar { name: (*name).to_owned() });
        }
        for name in env.non_utf8_vars() {
            warnings.push(Warning::IgnoredEnvVar { name: name.clone() });
        }
        let text = |p: Param| m.get(p).filter(|v| !v.is_empty()).map(str::to_owned);
        let int = |p: Param| m.get(p).and_then(param::parse_int);

        // Targets: one per hostaddr entry, else per host entry, else one.
        let hosts: Vec<&str> =
            m.get(Param::Host).filter(|h| !h.is_empty()).map_or(vec![], |h| h.split(',').collect());
        let addrs: Vec<&str> =
            m.get(Param::HostAddr).filter(|h| !h.is_empty()).map_or(vec![], |h| h.split(',').collect());
        let count = if !addrs.is_empty() { addrs.len() } else { hosts.len().max(1) };
        if !addrs.is_empty() && !hosts.is_empty() && hosts.len() != addrs.len() {
            return Err(ConfigError::HostCountMismatch { hosts: hosts.len(), hostaddrs: addrs.len() });
        }
        let ports: Vec<u16> = match m.get(Param::Port).filter(|p| !p.is_empty()) {
            None => vec![DEFAULT_PORT; count],
            Some(list) => {
                let entries: Vec<u16> =
                    list.split(',').map(|e| param::parse_port(e).flatten().unwrap_or(DEFAULT_PORT)).collect();
                match entries.len() {
                    1 => vec![entries[0]; count],
                    n if n == count => entries,
                    n => return Err(ConfigError::PortCountMismatch { ports: n, hosts: count }),
                }
            }
        };
        let mut targets = Vec::with_capacity(count);
        for (i, &port) in ports.iter().enumerate() {
            let name = hosts.get(i).filter(|h| !h.is_empty()).map(|h| (*h).to_owned());
            let addr = addrs.get(i).filter(|a| !a.is_empty()).and_then(|a| a.parse::<IpAddr>().ok());
            let host = match (name, addr) {
                (name, Some(addr)) => HostSpec::Tcp { name, addr: Some(addr) },
                (Some(n), None) if is_unix_socket_path(&n) => HostSpec::Unix { dir: n },
                (Some(n), None) => HostSpec::Tcp { name: Some(n), addr: None },
                (None, None) => match env.default_socket_dir() {
                    Some(dir) => HostSpec::Unix { dir: dir.to_owned() },
                    None => HostSpec::Tcp { name: Some(DEFAULT_HOST.to_owned()), addr: None },
                },
            };
            targets.push(Target { host, port, password: None });
        }

        let user =
            text(Param::User).or_else(|| env.os_user().map(str::to_owned)).ok_or(ConfigError::NoUser)?;
        let dbname = text(Param::DbName).unwrap_or_else(|| user.clone());

        // Password: explicit, else per target from the passfile.
        let password = m.password().filter(|p| !p.is_empty()).cloned();
        let mut passfile = None;
        if let Some(pw) = &password {
            for t in &mut targets {
                t.password = Some(pw.clone());
            }
        } else {
            passfile = text(Param::PassFile)
                .map(|p| env.expand_tilde(&p))
                .or_else(|| env.home().map(|h| h.join(".pgpass")));
            if let Some(path) = &passfile {
                for t in &mut targets {
                    let host = passfile_host(t, env);
                    let port = t.port.to_string();
                    let key = Lookup { host: &host, port: &port, dbname: &dbname, user: &user };
                    t.password = passfile::lookup(path, key, &mut warnings);
                }
            }
        }

        let tls = resolve_tls(&m, env)?;
        if tls.mode == SslMode::VerifyFull {
            for (index, t) in targets.iter().enumerate() {
                if let HostSpec::Tcp { name: None, addr: Some(a) } = &t.host {
                    return Err(ConfigError::VerifyFullWithoutHostName { index, hostaddr: a.to_string() });
                }
            }
        }
        if m.get(Param::GssEncMode).and_then(GssEncMode::parse) == Some(GssEncMode::Require) {
            return Err(ConfigError::UnsupportedOption { keyword: "gssencmode=require".to_owned() });
        }
        if text(Param::ClientEncoding).as_deref() == Some("auto") {
            return Err(ConfigError::UnsupportedOption { keyword: "client_encoding=auto".to_owned() });
        }

        let secs = |p: Param| int(p).map(|s| Duration::from_secs(s.max(0) as u64));
        let env_startup_options = STARTUP_ENV_OPTIONS
            .iter()
            .filter_map(|(var, name)| {
                let v = env.var(var)?;
                (!v.eq_ignore_ascii_case("default") && !v.contains('\0')).then(|| (*name, v.to_owned()))
            })
            .collect();

        Ok(ResolvedConfig {
            targets,
            user,
            dbname,
            password,
            passfile,
            replication: m.get(Param::Replication).and_then(Replication::parse).unwrap_or_default(),
            application_name: text(Param::ApplicationName),
            fallback_application_name: text(Param::FallbackApplicationName),
            options: text(Param::Options),
            client_encoding: text(Param::ClientEncoding),
            connect_timeout: int(Param::ConnectTimeout)
                .filter(|&s| s > 0)
                .map(|s| Duration::from_secs(s.max(2) as u64)),
            tls,
            target_session_attrs: m
                .get(Param::TargetSessionAttrs)
                .and_then(TargetSessionAttrs::parse)
                .unwrap_or(TargetSessionAttrs::Any),
            keepalives: Keepalives {
                enabled: int(Param::Keepalives).is_none_or(|v| v != 0),
                idle: secs(Param::KeepalivesIdle),
                interval: secs(Param::KeepalivesInterval),
                count: int(Param::KeepalivesCount).map(|c| c.max(0) as u32),
                tcp_user_timeout: int(Param::TcpUserTimeout)
                    .map(|ms| Duration::from_millis(ms.max(0) as u64)),
            },
            env_startup_options,
            warnings,
        })
    }
}

/// `is_unixsock_path`: an absolute path, or `@` for the Linux abstract namespace.
fn is_unix_socket_path(host: &str) -> bool {
    host.starts_with('/') || host.starts_with('@')
}

/// The host key for the passfile: the host, else the address; the default socket directory
/// counts as `localhost`.
fn passfile_host(t: &Target, env: &Env) -> String {
    match &t.host {
        HostSpec::Unix { dir } if Some(dir.as_str()) == env.default_socket_dir() => DEFAULT_HOST.to_owned(),
        _ => t.host_text(),
    }
}

fn resolve_tls(m: &Config, env: &Env) -> Result<TlsSettings, ConfigError> {
    let path = |p: Param| m.get(p).filter(|v| !v.is_empty()).map(|v| env.expand_tilde(v));
    let default_file = |name: &str| {
        let f = env.home()?.join(".postgresql").join(name);
        f.is_file().then_some(f)
    };
    let root_cert = match m.get(Param::SslRootCert).filter(|v| !v.is_empty()) {
        Some("system") => Some(RootCert::System),
        Some(_) => path(Param::SslRootCert).map(RootCert::File),
        None => default_file("root.crt").map(RootCert::File),
    };
    let mode = match m.get(Param::SslMode).and_then(SslMode::parse) {
        Some(mode) => mode,
        None if root_cert == Some(RootCert::System) => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    if root_cert == Some(RootCert::System) && mode != SslMode::VerifyFull {
        return Err(ConfigError::WeakSslModeForSystemRoots { mode });
    }
    let negotiation =
        m.get(Param::SslNegotiation).and_then(SslNegotiation::parse).unwrap_or(SslNegotiation::Postgres);
    if negotiation == SslNegotiation::Direct && !mode.requires_tls() {
        return Err(ConfigError::WeakSslModeForDirect { mode });
    }
    let version = |p: Param| m.get(p).and_then(TlsVersion::parse);
    let min_version = if m.is_set(Param::SslMinProtocolVersion) {
        version(Param::SslMinProtocolVersion)
    } else {
        Some(TlsVersion::Tls1_2)
    };
    let max_version = version(Param::SslMaxProtocolVersion);
    if let (Some(min), Some(max)) = (min_version, max_version)
        && min > max
    {
        return Err(ConfigError::InvalidTlsVersionRange { min, max });
    }
    Ok(TlsSettings {
        mode,
        negotiation,
        cert: path(Param::SslCert).or_else(|| default_file("postgresql.crt")),
        key: path(Param::SslKey).or_else(|| default_file("postgresql.key")),
        key_password: m.sslpassword().filter(|p| !p.is_empty()).cloned(),
        root_cert,
        crl: path(Param::SslCrl).or_else(|| default_file("root.crl")),
        sni: m.get(Param::SslSni) != Some("0"),
        min_version,
        max_version,
        channel_binding: m
            .get(Param::ChannelBinding)
            .and_then(ChannelBinding::parse)
            .unwrap_or(ChannelBinding::Prefer),
    })
}

impl ResolvedConfig {
    /// The parameters of the StartupMessage, in libpq's order (`build_startup_packet` in
    /// fe-protocol3.c): user, database, replication, options, application_name (else the
    /// fallback), client_encoding, then `PGDATESTYLE`/`PGTZ`/`PGGEQO`. Never the password.
    pub fn startup_params(&self) -> Vec<(&'static str, String)> {
        let mut out = vec![("user", self.user.clone()), ("database", self.dbname.clone())];
        if let Some(r) = self.replication.startup_value() {
            out.push(("replication", r.to_owned()));
        }
        if let Some(o) = &self.options {
            out.push(("options", o.clone()));
        }
        if let Some(a) = self.application_name.as_ref().or(self.fallback_application_name.as_ref()) {
            out.push(("application_name", a.clone()));
        }
        if let Some(e) = &self.client_encoding {
            out.push(("client_encoding", e.clone()));
        }
        out.extend(self.env_startup_options.iter().cloned());
        out
    }

    /// Replaces the database name (a value, never re-parsed). The passfile password was looked
    /// up for the old name: re-resolve a [`Config`] instead when a passfile is in use.
    pub fn with_dbname(mut self, dbname: &str) -> Self {
        self.dbname = dbname.to_owned();
        self
    }

    /// The password shared by every target, if there is exactly one.
    fn single_password(&self) -> Option<&Password> {
        let first = self.targets.first()?.password.as_ref()?;
        self.targets.iter().all(|t| t.password.as_ref() == Some(first)).then_some(first)
    }

    fn list(&self, f: impl Fn(&Target) -> String) -> String {
        self.targets.iter().map(f).collect::<Vec<_>>().join(",")
    }

    fn host_list(&self) -> String {
        self.list(|t| match &t.host {
            HostSpec::Tcp { name, .. } => name.clone().unwrap_or_default(),
            HostSpec::Unix { dir } => dir.clone(),
        })
    }

    fn hostaddr_list(&self) -> Option<String> {
        let any = self.targets.iter().any(|t| matches!(t.host, HostSpec::Tcp { addr: Some(_), .. }));
        any.then(|| {
            self.list(|t| match &t.host {
                HostSpec::Tcp { addr: Some(a), .. } => a.to_string(),
                _ => String::new(),
            })
        })
    }

    /// Non-secret settings as (parameter, value), fully resolved, for child processes.
    fn child_settings(&self) -> Vec<(Param, String)> {
        let mut v = vec![(Param::Host, self.host_list())];
        if let Some(a) = self.hostaddr_list() {
            v.push((Param::HostAddr, a));
        }
        v.push((Param::Port, self.list(|t| t.port.to_string())));
        v.push((Param::User, self.user.clone()));
        v.push((Param::DbName, self.dbname.clone()));
        if self.password.is_none()
            && let Some(p) = &self.passfile
        {
            v.push((Param::PassFile, p.to_string_lossy().into_owned()));
        }
        let opt = |v: &mut Vec<(Param, String)>, p: Param, s: &Option<String>| {
            if let Some(s) = s {
                v.push((p, s.clone()));
            }
        };
        opt(&mut v, Param::ApplicationName, &self.application_name);
        opt(&mut v, Param::FallbackApplicationName, &self.fallback_application_name);
        opt(&mut v, Param::Options, &self.options);
        opt(&mut v, Param::ClientEncoding, &self.client_encoding);
        if let Some(t) = self.connect_timeout {
            v.push((Param::ConnectTimeout, t.as_secs().to_string()));
        }
        let tls = &self.tls;
        v.push((Param::SslMode, tls.mode.as_str().to_owned()));
        if tls.negotiation != SslNegotiation::Postgres {
            v.push((Param::SslNegotiation, tls.negotiation.as_str().to_owned()));
        }
        let path = |v: &mut Vec<(Param, String)>, p: Param, f: &Option<PathBuf>| {
            if let Some(f) = f {
                v.push((p, f.to_string_lossy().into_owned()));
            }
        };
        path(&mut v, Param::SslCert, &tls.cert);
        path(&mut v, Param::SslKey, &tls.key);
        match &tls.root_cert {
            Some(RootCert::File(f)) => v.push((Param::SslRootCert, f.to_string_lossy().into_owned())),
            Some(RootCert::System) => v.push((Param::SslRootCert, "system".to_owned())),
            None => {}
        }
        path(&mut v, Param::SslCrl, &tls.crl);
        if !tls.sni {
            v.push((Param::SslSni, "0".to_owned()));
        }
        if let Some(min) = tls.min_version {
            v.push((Param::SslMinProtocolVersion, min.as_str().to_owned()));
        }
        if let Some(max) = tls.max_version {
            v.push((Param::SslMaxProtocolVersion, max.as_str().to_owned()));
        }
        v.push((Param::ChannelBinding, tls.channel_binding.as_str().to_owned()));
        v.push((Param::TargetSessionAttrs, self.target_session_attrs.as_str().to_owned()));
        v
    }

    /// Environment variables that give a libpq child process (pg_dump, psql) this
    /// configuration, password included as `PGPASSWORD` when every target shares one
    /// (otherwise write [`ResolvedConfig::passfile_contents`] to a 0600 file and set
    /// `PGPASSFILE`). The database name travels as `PGDATABASE`, which libpq never expands as
    /// a connection string, so data-derived names are safe here.
    ///
    /// First remove every name in [`LIBPQ_ENV_VARS`] from the child's environment. Settings
    /// without a variable (`replication`, `keepalives*`, `fallback_application_name`,
    /// `sslpassword`) do not travel this way.
    pub fn to_libpq_env(&self) -> Vec<(&'static str, String)> {
        let mut out: Vec<(&'static str, String)> =
            self.child_settings().into_iter().filter_map(|(p, v)| Some((p.env_var()?, v))).collect();
        if let Some(pw) = self.single_password() {
            out.push(("PGPASSWORD", pw.expose().to_owned()));
        }
        out
    }

    /// The resolved settings as a keyword/value connection string without `password` or
    /// `sslpassword`, for a child's `-d`/`--dbname` argument (the password goes through
    /// [`ResolvedConfig::to_libpq_env`] or a passfile, never argv).
    ///
    /// libpq expands a `dbname` argument holding `=` as a connection string once; the
    /// database name inside is quoted and is not expanded again, so any name is safe.
    pub fn to_keyword_string_without_password(&self) -> String {
        let settings = self.child_settings();
        let mut s = keyword_string(settings.iter().map(|(p, v)| (*p, v.as_str())));
        for (p, v) in [
            (Param::Replication, self.replication.startup_value().map(str::to_owned)),
            (Param::Keepalives, (!self.keepalives.enabled).then(|| "0".to_owned())),
            (Param::KeepalivesIdle, self.keepalives.idle.map(|d| d.as_secs().to_string())),
            (Param::KeepalivesInterval, self.keepalives.interval.map(|d| d.as_secs().to_string())),
            (Param::KeepalivesCount, self.keepalives.count.map(|c| c.to_string())),
            (Param::TcpUserTimeout, self.keepalives.tcp_user_timeout.map(|d| d.as_millis().to_string())),
        ] {
            if let Some(v) = v {
                s.push(' ');
                s.push_str(p.keyword());
                s.push('=');
                s.push_str(&quote_conninfo_value(&v));
            }
        }
        s
    }

    /// Passfile lines giving each target its password (`host:port:*:user:password`, escaped;
    /// a socket target also as `localhost`, which a child libpq uses for its own default
    /// directory). Write them to a file created with mode 0600 and point `PGPASSFILE` at it.
    pub fn passfile_contents(&self) -> Option<Password> {
        let mut out = String::new();
        for t in &self.targets {
            let Some(pw) = &t.password else { continue };
            let mut hosts = vec![t.host_text()];
            if matches!(t.host, HostSpec::Unix { .. }) {
                hosts.push(DEFAULT_HOST.to_owned());
            }
            for h in hosts {
                out.push_str(&format!(
                    "{}:{}:*:{}:{}\n",
                    escape_passfile_field(&h),
                    t.port,
                    escape_passfile_field(&self.user),
                    escape_passfile_field(pw.expose())
                ));
            }
        }
        (!out.is_empty()).then(|| Password::from(out))
    }
}
