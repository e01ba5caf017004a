//! Typed values of the enumerated connection parameters, with libpq's spellings.
//!
//! Reference: libpq-connect.html §34.1.2 "Parameter Key Words"; validation as in
//! `pqConnectOptions2` (src/interfaces/libpq/fe-connect.c).

use std::fmt;

/// Generates an enum whose values are spelled exactly as libpq spells them.
macro_rules! spelled_enum {
    ($(#[$meta:meta])* $name:ident, expected = $expected:literal,
     { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in libpq's documentation order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// What the error message lists as accepted spellings.
            pub(crate) const EXPECTED: &'static str = $expected;

            /// The libpq spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// Parses libpq's spelling (exact, case-sensitive, as libpq's `strcmp`).
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

spelled_enum!(
    /// `sslmode` (libpq-ssl.html §34.19.3 "Protection Provided in Different Modes").
    SslMode, expected = "disable, allow, prefer, require, verify-ca, verify-full", {
    /// Plaintext only.
    Disable => "disable",
    /// Plaintext first, TLS if the server insists.
    Allow => "allow",
    /// TLS first, plaintext if the server refuses (the default).
    Prefer => "prefer",
    /// TLS, certificate not verified (libpq verifies it when a root certificate file exists).
    Require => "require",
    /// TLS, certificate chain verified against `sslrootcert`.
    VerifyCa => "verify-ca",
    /// TLS, chain verified and the host name checked against the certificate.
    VerifyFull => "verify-full",
});

impl SslMode {
    /// Whether this mode can never fall back to plaintext.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// Whether the server certificate chain must be verified.
    pub fn verifies_chain(self) -> bool {
        matches!(self, SslMode::VerifyCa | SslMode::VerifyFull)
    }
}

spelled_enum!(
    /// `sslnegotiation` (PostgreSQL 17+): SSLRequest first, or TLS directly with ALPN.
    SslNegotiation, expected = "postgres, direct", {
    /// SSLRequest, then TLS (every server version).
    Postgres => "postgres",
    /// TLS handshake at once with ALPN `postgresql` (servers 17+).
    Direct => "direct",
});

spelled_enum!(
    /// `channel_binding` for SCRAM-SHA-256-PLUS.
    ChannelBinding, expected = "disable, prefer, require", {
    /// Never use channel binding.
    Disable => "disable",
    /// Use it when TLS and the server offer it (the default).
    Prefer => "prefer",
    /// Fail unless the server authenticates with channel binding.
    Require => "require",
});

spelled_enum!(
    /// `target_session_attrs`: which kind of server is acceptable.
    TargetSessionAttrs, expected = "any, read-write, read-only, primary, standby, prefer-standby", {
    /// Any server (the default).
    Any => "any",
    /// A server accepting writes by default.
    ReadWrite => "read-write",
    /// A server not accepting writes by default.
    ReadOnly => "read-only",
    /// A server not in hot standby.
    Primary => "primary",
    /// A server in hot standby.
    Standby => "standby",
    /// A standby if one is available, else any server.
    PreferStandby => "prefer-standby",
});

spelled_enum!(
    /// `gssencmode`. This client has no GSSAPI: `require` is refused at resolution.
    GssEncMode, expected = "disable, prefer, require", {
    /// No GSSAPI encryption.
    Disable => "disable",
    /// GSSAPI encryption if possible (never possible here).
    Prefer => "prefer",
    /// GSSAPI encryption or fail (unsupported here).
    Require => "require",
});

/// The `replication` parameter: a physical or logical walsender, or an ordinary backend.
///
/// The server reads the value (`src/backend/utils/init/postinit.c` via `parse_bool`): any
/// boolean spelling (`true`, `on`, `yes`, `1`, unique prefixes such as `t` or `y`, any case)
/// or the exact word `database`. See protocol-replication.html.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Replication {
    /// An ordinary backend (no `replication` startup parameter sent).
    #[default]
    Off,
    /// `replication=true`: a physical walsender (BASE_BACKUP, START_REPLICATION PHYSICAL).
    Physical,
    /// `replication=database`: a logical walsender connected to `dbname`.
    Database,
}

impl Replication {
    /// The value sent in the startup packet, `None` for [`Replication::Off`].
    pub fn startup_value(self) -> Option<&'static str> {
        match self {
            Replication::Off => None,
            Replication::Physical => Some("true"),
            Replication::Database => Some("database"),
        }
    }

    /// The canonical spelling written back into connection strings.
    pub fn as_str(self) -> &'static str {
        match self {
            Replication::Off => "false",
            Replication::Physical => "true",
            Replication::Database => "database",
        }
    }

    /// Parses as the server does: `database` exactly, else a PostgreSQL boolean.
    pub fn parse(s: &str) -> Option<Self> {
        if s == "database" {
            return Some(Replication::Database);
        }
        parse_pg_bool(s).map(|b| if b { Replication::Physical } else { Replication::Off })
    }

    pub(crate) const EXPECTED: &'static str = "a boolean (true, false, on, off, yes, no, 1, 0) or database";
}

impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// PostgreSQL's boolean spellings (`parse_bool_with_len` in src/backend/utils/adt/bool.c):
/// case-insensitive, unique prefixes of true/false/yes/no, `on`/`off` with at least two
/// letters, `1`/`0`.
pub(crate) fn parse_pg_bool(s: &str) -> Option<bool> {
    let lower = s.to_ascii_lowercase();
    let l = lower.as_str();
    let prefix_of = |word: &str, min: usize| l.len() >= min && word.starts_with(l);
    match l.as_bytes().first()? {
        b't' if prefix_of("true", 1) => Some(true),
        b'f' if prefix_of("false", 1) => Some(false),
        b'y' if prefix_of("yes", 1) => Some(true),
        b'n' if prefix_of("no", 1) => Some(false),
        b'o' if l == "on" => Some(true),
        b'o' if prefix_of("off", 2) => Some(false),
        b'1' if l.len() == 1 => Some(true),
        b'0' if l.len() == 1 => Some(false),
        _ => None,
    }
}

/// A TLS protocol version for `ssl_min_protocol_version` / `ssl_max_protocol_version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.0 (rustls does not implement it).
    Tls1_0,
    /// TLS 1.1 (rustls does not implement it).
    Tls1_1,
    /// TLS 1.2 (libpq's default minimum).
    Tls1_2,
    /// TLS 1.3.
    Tls1_3,
}

impl TlsVersion {
    /// The libpq spelling (`TLSv1.2`).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls1_0 => "TLSv1",
            TlsVersion::Tls1_1 => "TLSv1.1",
            TlsVersion::Tls1_2 => "TLSv1.2",
            TlsVersion::Tls1_3 => "TLSv1.3",
        }
    }

    /// Parses libpq's spelling, case-insensitively as `sslVerifyProtocolVersion` does.
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "tlsv1" => Some(TlsVersion::Tls1_0),
            "tlsv1.1" => Some(TlsVersion::Tls1_1),
            "tlsv1.2" => Some(TlsVersion::Tls1_2),
            "tlsv1.3" => Some(TlsVersion::Tls1_3),
            _ => None,
        }
    }

    pub(crate) const EXPECTED: &'static str = "TLSv1, TLSv1.1, TLSv1.2, TLSv1.3 or empty";
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_their_spelling() {
        for m in SslMode::ALL {
            assert_eq!(SslMode::parse(m.as_str()), Some(*m));
        }
        for c in ChannelBinding::ALL {
            assert_eq!(ChannelBinding::parse(&c.to_string()), Some(*c));
        }
        for t in TargetSessionAttrs::ALL {
            assert_eq!(TargetSessionAttrs::parse(t.as_str()), Some(*t));
        }
        assert_eq!(SslMode::parse("VERIFY-FULL"), None, "libpq compares with strcmp");
        assert_eq!(SslNegotiation::parse("direct"), Some(SslNegotiation::Direct));
    }

    #[test]
    fn replication_accepts_the_server_boolean_spellings() {
        for yes in ["true", "TRUE", "t", "tr", "on", "On", "yes", "y", "1"] {
            assert_eq!(Replication::parse(yes), Some(Replication::Physical), "{yes}");
        }
        for no in ["false", "f", "off", "of", "no", "n", "0", "FALSE"] {
            assert_eq!(Replication::parse(no), Some(Replication::Off), "{no}");
        }
        assert_eq!(Replication::parse("database"), Some(Replication::Database));
        for bad in ["", "o", "2", "10", "truee", "Database", "onn", "of f"] {
            assert_eq!(Replication::parse(bad), None, "{bad}");
        }
        assert_eq!(Replication::Physical.startup_value(), Some("true"));
        assert_eq!(Replication::Off.startup_value(), None);
    }

    #[test]
    fn tls_versions() {
        assert_eq!(TlsVersion::parse("tlsv1.3"), Some(TlsVersion::Tls1_3));
        assert_eq!(TlsVersion::parse("TLSv1"), Some(TlsVersion::Tls1_0));
        assert_eq!(TlsVersion::parse("TLSv1.4"), None);
        assert!(TlsVersion::Tls1_2 < TlsVersion::Tls1_3);
    }
}
