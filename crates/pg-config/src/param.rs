//! The connection parameters this client understands, their keywords, environment variables
//! and value syntax.
//!
//! Reference: libpq-connect.html §34.1.2 "Parameter Key Words", libpq-envars.html, and the
//! `PQconninfoOptions` table in src/interfaces/libpq/fe-connect.c.

use std::net::IpAddr;

use crate::error::{ConfigError, Source};
use crate::values::{
    ChannelBinding, GssEncMode, Replication, SslMode, SslNegotiation, TargetSessionAttrs, TlsVersion,
};

/// The syntax a parameter's value must follow.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    /// Any text.
    Text,
    /// A file path (a leading `~/` is expanded at resolution).
    Path,
    /// A secret (password, sslpassword).
    Secret,
    /// Comma-separated host names or socket directories.
    HostList,
    /// Comma-separated numeric addresses (entries may be empty).
    HostAddrList,
    /// Comma-separated ports (entries may be empty).
    PortList,
    /// An integer, parsed like libpq's `pqParseIntParam`.
    Int,
    /// `0` or `1`.
    ZeroOne,
    /// One of the spellings of an enumerated type.
    Enum(fn(&str) -> bool, &'static str),
    /// A TLS version or empty.
    TlsVersion,
}

/// Declares the parameter table once: variant, keyword, environment variable, value syntax.
macro_rules! params {
    ($( $(#[$m:meta])* $variant:ident = $kw:literal, $env:expr, $kind:expr; )+) => {
        /// A connection parameter this client understands, named by its libpq keyword.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(usize)]
        pub enum Param {
            $($(#[$m])* $variant),+
        }

        impl Param {
            /// Every parameter, in the order used when writing connection strings.
            pub const ALL: &'static [Param] = &[$(Param::$variant),+];
            /// Number of parameters.
            pub(crate) const COUNT: usize = Self::ALL.len();

            /// The libpq keyword.
            pub fn keyword(self) -> &'static str {
                match self { $(Param::$variant => $kw),+ }
            }

            /// The `PG*` environment variable libpq falls back to, if any.
            pub fn env_var(self) -> Option<&'static str> {
                match self { $(Param::$variant => $env),+ }
            }

            pub(crate) fn kind(self) -> Kind {
                match self { $(Param::$variant => $kind),+ }
            }

            /// The parameter for a keyword (case-sensitive, as in libpq).
            pub fn from_keyword(keyword: &str) -> Option<Param> {
                match keyword { $($kw => Some(Param::$variant),)+ _ => None }
            }
        }
    };
}

params! {
    /// `host`: host names, IP addresses or Unix socket directories, comma-separated.
    Host = "host", Some("PGHOST"), Kind::HostList;
    /// `hostaddr`: numeric addresses, comma-separated (skips name resolution).
    HostAddr = "hostaddr", Some("PGHOSTADDR"), Kind::HostAddrList;
    /// `port`: one port, or one per host.
    Port = "port", Some("PGPORT"), Kind::PortList;
    /// `user`.
    User = "user", Some("PGUSER"), Kind::Text;
    /// `password`.
    Password = "password", Some("PGPASSWORD"), Kind::Secret;
    /// `passfile`: the password file (default `~/.pgpass`).
    PassFile = "passfile", Some("PGPASSFILE"), Kind::Path;
    /// `dbname`.
    DbName = "dbname", Some("PGDATABASE"), Kind::Text;
    /// `replication`: `true`/`false` (any PostgreSQL boolean) or `database`.
    Replication = "replication", None, Kind::Enum(|s| crate::Replication::parse(s).is_some(), Replication::EXPECTED);
    /// `application_name`.
    ApplicationName = "application_name", Some("PGAPPNAME"), Kind::Text;
    /// `fallback_application_name`.
    FallbackApplicationName = "fallback_application_name", None, Kind::Text;
    /// `options`: command-line options for the server (`-c name=value ...`).
    Options = "options", Some("PGOPTIONS"), Kind::Text;
    /// `client_encoding`.
    ClientEncoding = "client_encoding", Some("PGCLIENTENCODING"), Kind::Text;
    /// `connect_timeout` in seconds (0 or negative: wait forever; 1 counts as 2).
    ConnectTimeout = "connect_timeout", Some("PGCONNECT_TIMEOUT"), Kind::Int;
    /// `sslmode`.
    SslMode = "sslmode", Some("PGSSLMODE"), Kind::Enum(|s| crate::SslMode::parse(s).is_some(), SslMode::EXPECTED);
    /// `sslnegotiation` (PostgreSQL 17+ servers for `direct`).
    SslNegotiation = "sslnegotiation", Some("PGSSLNEGOTIATION"), Kind::Enum(|s| crate::SslNegotiation::parse(s).is_some(), SslNegotiation::EXPECTED);
    /// `sslcert`: client certificate file.
    SslCert = "sslcert", Some("PGSSLCERT"), Kind::Path;
    /// `sslkey`: client private key file.
    SslKey = "sslkey", Some("PGSSLKEY"), Kind::Path;
    /// `sslrootcert`: trusted root certificates file, or `system`.
    SslRootCert = "sslrootcert", Some("PGSSLROOTCERT"), Kind::Path;
    /// `sslcrl`: certificate revocation list file.
    SslCrl = "sslcrl", Some("PGSSLCRL"), Kind::Path;
    /// `sslpassword`: passphrase of an encrypted `sslkey`.
    SslPassword = "sslpassword", None, Kind::Secret;
    /// `sslsni`: send the host name in the TLS handshake (`1`, default) or not (`0`).
    SslSni = "sslsni", Some("PGSSLSNI"), Kind::ZeroOne;
    /// `ssl_min_protocol_version` (default `TLSv1.2`).
    SslMinProtocolVersion = "ssl_min_protocol_version", Some("PGSSLMINPROTOCOLVERSION"), Kind::TlsVersion;
    /// `ssl_max_protocol_version`.
    SslMaxProtocolVersion = "ssl_max_protocol_version", Some("PGSSLMAXPROTOCOLVERSION"), Kind::TlsVersion;
    /// `channel_binding`.
    ChannelBinding = "channel_binding", Some("PGCHANNELBINDING"), Kind::Enum(|s| crate::ChannelBinding::parse(s).is_some(), ChannelBinding::EXPECTED);
    /// `target_session_attrs`.
    TargetSessionAttrs = "target_session_attrs", Some("PGTARGETSESSIONATTRS"), Kind::Enum(|s| crate::TargetSessionAttrs::parse(s).is_some(), TargetSessionAttrs::EXPECTED);
    /// `gssencmode` (no GSSAPI here: `require` is refused at resolution).
    GssEncMode = "gssencmode", Some("PGGSSENCMODE"), Kind::Enum(|s| crate::GssEncMode::parse(s).is_some(), GssEncMode::EXPECTED);
    /// `keepalives`: TCP keepalives on (non-zero, default) or off (`0`).
    Keepalives = "keepalives", None, Kind::Int;
    /// `keepalives_idle` in seconds.
    KeepalivesIdle = "keepalives_idle", None, Kind::Int;
    /// `keepalives_interval` in seconds.
    KeepalivesInterval = "keepalives_interval", None, Kind::Int;
    /// `keepalives_count`.
    KeepalivesCount = "keepalives_count", None, Kind::Int;
    /// `tcp_user_timeout` in milliseconds.
    TcpUserTimeout = "tcp_user_timeout", None, Kind::Int;
}

/// Keywords libpq accepts that this client deliberately does not implement: an explicit
/// error is better than silently ignoring, say, a service file.
pub(crate) const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "service",
    "sslcompression",
    "sslcertmode",
    "sslcrldir",
    "sslkeylogfile",
    "requirepeer",
    "require_auth",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "load_balance_hosts",
    "scram_client_key",
    "scram_server_key",
    "oauth_issuer",
    "oauth_client_id",
    "oauth_client_secret",
    "oauth_scope",
    "max_protocol_version",
    "min_protocol_version",
];

/// Environment variables libpq reads for options this client does not implement; a caller
/// sees a [`crate::Warning::IgnoredEnvVar`] when one is set.
pub(crate) const UNSUPPORTED_ENV_VARS: &[&str] = &[
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLCOMPRESSION",
    "PGSSLCERTMODE",
    "PGSSLCRLDIR",
    "PGREQUIREPEER",
    "PGREQUIREAUTH",
    "PGKRBSRVNAME",
    "PGGSSLIB",
    "PGGSSDELEGATION",
    "PGLOADBALANCEHOSTS",
    "PGMAXPROTOCOLVERSION",
    "PGMINPROTOCOLVERSION",
];

/// libpq's "environment options" (`EnvironmentOptions` in fe-connect.c): sent as startup
/// parameters unless set to `default`.
pub(crate) const STARTUP_ENV_OPTIONS: &[(&str, &str)] =
    &[("PGDATESTYLE", "datestyle"), ("PGTZ", "timezone"), ("PGGEQO", "geqo")];

/// Parses an integer as libpq's `pqParseIntParam`: optional surrounding whitespace, an
/// optional sign, decimal digits, within `i32`.
pub(crate) fn parse_int(value: &str) -> Option<i32> {
    let t = value.trim_matches(is_c_space);
    if t.is_empty() {
        return None;
    }
    t.parse::<i32>().ok()
}

/// C's `isspace` in the "C" locale.
pub(crate) fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// Parses one `port` entry: empty (the default port) or 1..=65535.
pub(crate) fn parse_port(entry: &str) -> Option<Option<u16>> {
    if entry.is_empty() {
        return Some(None);
    }
    match parse_int(entry)? {
        p @ 1..=65535 => Some(Some(p as u16)),
        _ => None,
    }
}

/// Checks a value against the parameter's syntax.
pub(crate) fn validate(param: Param, value: &str, origin: &Source) -> Result<(), ConfigError> {
    if value.contains('\0') {
        return Err(ConfigError::NulByte { origin: origin.clone() });
    }
    let invalid = |expected: &'static str| ConfigError::InvalidValue {
        origin: origin.clone(),
        value: value.to_owned(),
        expected,
    };
    match param.kind() {
        Kind::Text | Kind::Path | Kind::Secret | Kind::HostList => Ok(()),
        Kind::HostAddrList => {
            for entry in value.split(',') {
                if !entry.is_empty() && entry.parse::<IpAddr>().is_err() {
                    return Err(ConfigError::InvalidHostAddr {
                        origin: origin.clone(),
                        value: entry.to_owned(),
                    });
                }
            }
            Ok(())
        }
        Kind::PortList => {
            for entry in value.split(',') {
                if parse_port(entry).is_none() {
                    return Err(ConfigError::InvalidPort { origin: origin.clone(), value: entry.to_owned() });
                }
            }
            Ok(())
        }
        Kind::Int => parse_int(value).map(|_| ()).ok_or_else(|| invalid("an integer")),
        Kind::ZeroOne => matches!(value, "0" | "1").then_some(()).ok_or_else(|| invalid("0 or 1")),
        Kind::Enum(check, expected) => check(value).then_some(()).ok_or_else(|| invalid(expected)),
        Kind::TlsVersion => (value.is_empty() || TlsVersion::parse(value).is_some())
            .then_some(())
            .ok_or_else(|| invalid(TlsVersion::EXPECTED)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_round_trip_and_env_vars_are_unique() {
        let mut envs = std::collections::HashSet::new();
        for (i, p) in Param::ALL.iter().enumerate() {
            assert_eq!(*p as usize, i);
            assert_eq!(Param::from_keyword(p.keyword()), Some(*p));
            if let Some(e) = p.env_var() {
                assert!(envs.insert(e), "{e} twice");
            }
        }
        assert_eq!(Param::from_keyword("HOST"), None);
        assert!(UNSUPPORTED_KEYWORDS.iter().all(|k| Param::from_keyword(k).is_none()));
    }

    #[test]
    fn int_parsing_follows_pq_parse_int_param() {
        assert_eq!(parse_int(" 10 "), Some(10));
        assert_eq!(parse_int("-3"), Some(-3));
        assert_eq!(parse_int("+3"), Some(3));
        assert_eq!(parse_int(""), None);
        assert_eq!(parse_int("  "), None);
        assert_eq!(parse_int("1 0"), None);
        assert_eq!(parse_int("0x10"), None);
        assert_eq!(parse_int("2147483648"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(parse_port(""), Some(None));
        assert_eq!(parse_port("5432"), Some(Some(5432)));
        assert_eq!(parse_port("0"), None);
        assert_eq!(parse_port("65536"), None);
        assert_eq!(parse_port("54x"), None);
        let err = validate(Param::Port, "5432,x", &Source::Keyword("port")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid port number \"x\" in connection option \"port\" (expected 1 to 65535)"
        );
    }

    #[test]
    fn enum_errors_name_the_source_and_the_choices() {
        let err = validate(Param::SslMode, "verify", &Source::Env("PGSSLMODE")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid value \"verify\" for environment variable PGSSLMODE \
             (expected disable, allow, prefer, require, verify-ca, verify-full)"
        );
        assert!(validate(Param::SslMode, "verify-ca", &Source::Keyword("sslmode")).is_ok());
        assert!(validate(Param::HostAddr, "127.0.0.1,,::1", &Source::Keyword("hostaddr")).is_ok());
        assert!(matches!(
            validate(Param::HostAddr, "localhost", &Source::Keyword("hostaddr")),
            Err(ConfigError::InvalidHostAddr { .. })
        ));
        assert!(matches!(
            validate(Param::User, "a\0b", &Source::Keyword("user")),
            Err(ConfigError::NulByte { .. })
        ));
    }
}
