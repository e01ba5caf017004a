//! [`Config`]: the settings given explicitly (connection string, URI, setters), before
//! environment variables and defaults are applied by [`Config::resolve_with`].

use std::fmt;
use std::str::FromStr;

use crate::error::{ConfigError, Source};
use crate::param::{self, Kind, Param, UNSUPPORTED_KEYWORDS};
use crate::parse;
use crate::secret::Password;
use crate::values::{ChannelBinding, Replication, SslMode};

/// Longest connection string accepted (64 KiB); a longer one is refused before parsing.
pub const MAX_CONNINFO_LEN: usize = 64 * 1024;

/// A libpq-compatible connection configuration: what was set explicitly, parameter by
/// parameter. Unset parameters fall back to `PG*` environment variables, then to libpq's
/// defaults, when the configuration is [resolved](Config::resolve_with).
///
/// An explicit empty value counts as set, exactly as in libpq: `host=''` ignores `PGHOST`
/// and means the default host.
///
/// `Debug` and `Display` never show `password` or `sslpassword`.
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    values: [Option<String>; Param::COUNT],
    password: Option<Password>,
    sslpassword: Option<Password>,
}

impl Default for Config {
    fn default() -> Self {
        Self { values: std::array::from_fn(|_| None), password: None, sslpassword: None }
    }
}

impl Config {
    /// An empty configuration (everything from the environment and defaults).
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a connection string in either libpq form: a `postgresql://` or `postgres://`
    /// URI, or `keyword=value` pairs (libpq-connect.html §34.1.1). Later settings override
    /// earlier ones.
    pub fn parse(conninfo: &str) -> Result<Self, ConfigError> {
        if conninfo.len() > MAX_CONNINFO_LEN {
            return Err(ConfigError::TooLong { len: conninfo.len(), limit: MAX_CONNINFO_LEN });
        }
        let mut cfg = Config::new();
        match parse::uri_prefix_len(conninfo) {
            0 => parse::parse_keyword_value(conninfo, &mut cfg)?,
            n => parse::parse_uri(conninfo, n, &mut cfg)?,
        }
        Ok(cfg)
    }

    /// Stores a value read from a connection string under a libpq keyword, with libpq's
    /// special cases (`requiressl`) and errors for unknown or unsupported keywords.
    pub(crate) fn store(&mut self, keyword: &str, value: String, uri_param: bool) -> Result<(), ConfigError> {
        let (keyword, value) = if keyword == "requiressl" {
            // Old spelling kept by libpq: requiressl=1 is sslmode=require, else prefer.
            ("sslmode", if value.starts_with('1') { "require" } else { "prefer" }.to_owned())
        } else {
            (keyword, value)
        };
        match Param::from_keyword(keyword) {
            Some(param) => self.set(param, value),
            None if UNSUPPORTED_KEYWORDS.contains(&keyword) => {
                Err(ConfigError::UnsupportedOption { keyword: keyword.to_owned() })
            }
            None if uri_param => Err(ConfigError::InvalidUriParameter { keyword: keyword.to_owned() }),
            None => Err(ConfigError::InvalidOption { keyword: keyword.to_owned() }),
        }
    }

    /// Sets a parameter from its text, validated as libpq would (after resolution) so
    /// mistakes are reported at once. The value is taken literally: it is never re-parsed as
    /// a connection string, whatever it contains.
    pub fn set(&mut self, param: Param, value: impl Into<String>) -> Result<(), ConfigError> {
        let value = value.into();
        self.set_from(param, value, &Source::Keyword(param.keyword()))
    }

    pub(crate) fn set_from(
        &mut self,
        param: Param,
        value: String,
        origin: &Source,
    ) -> Result<(), ConfigError> {
        param::validate(param, &value, origin)?;
        match param {
            Param::Password => self.password = Some(Password::from(value)),
            Param::SslPassword => self.sslpassword = Some(Password::from(value)),
            _ => self.values[param as usize] = Some(value),
        }
        Ok(())
    }

    /// Sets a parameter by keyword (`"sslmode"`), with the same errors as a connection string
    /// holding that keyword.
    pub fn set_keyword(&mut self, keyword: &str, value: impl Into<String>) -> Result<(), ConfigError> {
        self.store(keyword, value.into(), false)
    }

    /// Removes an explicit setting (the environment or the default applies again).
    pub fn unset(&mut self, param: Param) {
        match param {
            Param::Password => self.password = None,
            Param::SslPassword => self.sslpassword = None,
            _ => self.values[param as usize] = None,
        }
    }

    /// Whether a parameter was set explicitly (possibly to the empty string).
    pub fn is_set(&self, param: Param) -> bool {
        match param {
            Param::Password => self.password.is_some(),
            Param::SslPassword => self.sslpassword.is_some(),
            _ => self.values[param as usize].is_some(),
        }
    }

    /// The explicit text of a non-secret parameter; `None` when unset, and always `None` for
    /// `password` and `sslpassword` (use [`Config::password`]).
    pub fn get(&self, param: Param) -> Option<&str> {
        self.values[param as usize].as_deref()
    }

    /// Sets the database name. It is a value: `"a=b"` or `"postgres://x"` is a database of
    /// that name, never a connection string (unlike libpq's `dbname` expansion).
    pub fn set_dbname(&mut self, dbname: &str) -> Result<(), ConfigError> {
        self.set(Param::DbName, dbname)
    }

    /// Builder form of [`Config::set_dbname`].
    pub fn with_dbname(mut self, dbname: &str) -> Result<Self, ConfigError> {
        self.set_dbname(dbname)?;
        Ok(self)
    }

    /// Sets the user name.
    pub fn set_user(&mut self, user: &str) -> Result<(), ConfigError> {
        self.set(Param::User, user)
    }

    /// Sets the password.
    pub fn set_password(&mut self, password: Password) {
        self.password = Some(password);
    }

    /// Sets one host (name, address, or socket directory when it starts with `/`).
    pub fn set_host(&mut self, host: &str) -> Result<(), ConfigError> {
        self.set(Param::Host, host)
    }

    /// Sets one port for every host.
    pub fn set_port(&mut self, port: u16) -> Result<(), ConfigError> {
        self.set(Param::Port, port.to_string())
    }

    /// Sets `sslmode`.
    pub fn set_sslmode(&mut self, mode: SslMode) {
        self.values[Param::SslMode as usize] = Some(mode.as_str().to_owned());
    }

    /// Sets `replication`.
    pub fn set_replication(&mut self, replication: Replication) {
        self.values[Param::Replication as usize] = Some(replication.as_str().to_owned());
    }

    /// Sets `channel_binding`.
    pub fn set_channel_binding(&mut self, cb: ChannelBinding) {
        self.values[Param::ChannelBinding as usize] = Some(cb.as_str().to_owned());
    }

    /// The explicit password, if any.
    pub fn password(&self) -> Option<&Password> {
        self.password.as_ref()
    }

    /// The explicit `sslpassword`, if any.
    pub fn sslpassword(&self) -> Option<&Password> {
        self.sslpassword.as_ref()
    }

    /// The explicit host list, split on commas.
    pub fn hosts(&self) -> Option<Vec<&str>> {
        self.get(Param::Host).map(|h| h.split(',').collect())
    }

    /// The explicit port list, split on commas (`None` entries mean the default port).
    pub fn ports(&self) -> Option<Vec<Option<u16>>> {
        self.get(Param::Port).map(|p| p.split(',').map(|e| param::parse_port(e).flatten()).collect())
    }

    /// The explicit user.
    pub fn user(&self) -> Option<&str> {
        self.get(Param::User)
    }

    /// The explicit database name.
    pub fn dbname(&self) -> Option<&str> {
        self.get(Param::DbName)
    }

    /// The explicit `sslmode`.
    pub fn sslmode(&self) -> Option<SslMode> {
        self.get(Param::SslMode).and_then(SslMode::parse)
    }

    /// The explicit `replication`.
    pub fn replication(&self) -> Option<Replication> {
        self.get(Param::Replication).and_then(Replication::parse)
    }

    /// Every explicit setting in [`Param::ALL`] order, secrets included (exposed).
    fn entries(&self, with_secrets: bool) -> impl Iterator<Item = (Param, &str)> {
        Param::ALL.iter().filter_map(move |&p| {
            let v = match p {
                Param::Password => self.password.as_ref().filter(|_| with_secrets).map(Password::expose),
                Param::SslPassword => {
                    self.sslpassword.as_ref().filter(|_| with_secrets).map(Password::expose)
                }
                _ => self.get(p),
            };
            v.map(|v| (p, v))
        })
    }

    /// The keyword/value connection string of the explicit settings, without `password` and
    /// `sslpassword`. Parsing it gives back the same settings minus those two.
    pub fn to_keyword_string_without_password(&self) -> String {
        keyword_string(self.entries(false))
    }

    /// The keyword/value connection string of the explicit settings, secrets included.
    /// Only for handing to code that needs the secret; never log it.
    pub fn to_keyword_string_exposing_password(&self) -> String {
        keyword_string(self.entries(true))
    }

    /// A `postgresql://` URI of the explicit settings for logs: the password, if set, shows
    /// as `********`, `sslpassword` is left out.
    pub fn redacted_uri(&self) -> String {
        self.uri(UriSecrets::Redact)
    }

    /// A `postgresql://` URI of the explicit settings, secrets included; parsing it gives
    /// back an equal `Config`. Never log it.
    pub fn to_uri_exposing_password(&self) -> String {
        self.uri(UriSecrets::Expose)
    }

    fn uri(&self, secrets: UriSecrets) -> String {
        let mut out = String::from("postgresql://");
        let mut query: Vec<(Param, &str)> = Vec::new();
        let mut done = [false; Param::COUNT];

        // userinfo: non-empty user / password only (URI parsing drops empty ones).
        let user = self.user().filter(|u| !u.is_empty());
        let password = self.password.as_ref().filter(|p| !p.is_empty());
        if user.is_some() || password.is_some() {
            if let Some(u) = user {
                out.push_str(&percent_encode(u, b""));
                done[Param::User as usize] = true;
            }
            if let Some(p) = password {
                out.push(':');
                match secrets {
                    UriSecrets::Expose => out.push_str(&percent_encode(p.expose(), b"")),
                    UriSecrets::Redact => out.push_str("********"),
                }
                done[Param::Password as usize] = true;
            }
            out.push('@');
        }

        // netloc: only when it reads back identically (see libpq's host/port list rules).
        if let Some(hosts) = self.hosts() {
            // The port entries as written (`0864` stays `0864`: the value is kept literally, so
            // printing the number it means would read back as a different configuration).
            let ports: Option<Vec<&str>> = self.get(Param::Port).map(|p| p.split(',').collect());
            let netloc_safe = hosts.iter().all(|h| !h.is_empty() && h.bytes().all(is_netloc_byte));
            let ports_fit = match &ports {
                None => hosts.len() == 1,
                // A lone empty port would read back as no port at all; an entry with spaces or
                // a sign goes to the query part, where it is kept as it is.
                Some(ps) => {
                    ps.len() == hosts.len()
                        && !(ps.len() == 1 && ps[0].is_empty())
                        && ps.iter().all(|e| e.bytes().all(|b| b.is_ascii_digit()))
                }
            };
            if netloc_safe && ports_fit {
                for (i, h) in hosts.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    if h.contains(':') {
                        out.push('[');
                        out.push_str(h);
                        out.push(']');
                    } else {
                        out.push_str(h);
                    }
                    if let Some(ps) = &ports {
                        out.push(':');
                        out.push_str(ps[i]);
                    }
                }
                done[Param::Host as usize] = true;
                done[Param::Port as usize] = true;
            }
        }

        if let Some(db) = self.dbname().filter(|d| !d.is_empty()) {
            out.push('/');
            out.push_str(&percent_encode(db, b""));
            done[Param::DbName as usize] = true;
        }

        let with_secrets = matches!(secrets, UriSecrets::Expose);
        for (p, v) in self.entries(with_secrets) {
            if !done[p as usize] {
                query.push((p, v));
            }
        }
        for (i, (p, v)) in query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(p.keyword());
            out.push('=');
            out.push_str(&percent_encode(v, b""));
        }
        out
    }

    /// Whether a setting given as a `dbname` would be expanded by libpq as a connection
    /// string (it contains `=` or starts with a URI scheme). Such names are safe here, but
    /// must not be handed to libpq tools as a bare `dbname`; see
    /// [`crate::ResolvedConfig::to_libpq_env`].
    pub fn dbname_needs_protection(dbname: &str) -> bool {
        parse::looks_like_connection_string(dbname)
    }
}

#[derive(Clone, Copy)]
enum UriSecrets {
    Redact,
    Expose,
}

/// Bytes that may stand unencoded in a URI host list (names, IPv4, IPv6 inside brackets).
fn is_netloc_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':')
}

/// Percent-encodes everything but RFC 3986 unreserved characters and `keep`.
pub(crate) fn percent_encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Quotes a value for the keyword/value form as libpq's `appendConnStrVal`: bare when made
/// only of `[A-Za-z0-9_.]`, else single-quoted with `'` and `\` backslash-escaped.
pub fn quote_conninfo_value(value: &str) -> String {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}

pub(crate) fn keyword_string<'a>(entries: impl Iterator<Item = (Param, &'a str)>) -> String {
    let mut out = String::new();
    for (p, v) in entries {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(p.keyword());
        out.push('=');
        out.push_str(&quote_conninfo_value(v));
    }
    out
}

impl FromStr for Config {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Config::parse(s)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for &p in Param::ALL {
            if matches!(p.kind(), Kind::Secret) {
                if self.is_set(p) {
                    m.entry(&p.keyword(), &format_args!("<redacted>"));
                }
            } else if let Some(v) = self.get(p) {
                m.entry(&p.keyword(), &v);
            }
        }
        m.finish()
    }
}

/// The keyword/value form without secrets (as [`Config::to_keyword_string_without_password`]).
impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_keyword_string_without_password())
    }
}
