//! [`ConfigError`]: everything that can be wrong with a connection configuration.
//!
//! Messages follow libpq's wording where libpq has one (so that users can search for them),
//! and add where the problem is (byte offset, keyword or environment variable). A value is
//! quoted in a message only when it is not a secret: no variant ever carries a password.

use std::fmt;

/// Where a setting came from, for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A connection string keyword, URI part or query parameter, or a setter.
    Keyword(&'static str),
    /// An environment variable.
    Env(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Keyword(k) => write!(f, "connection option \"{k}\""),
            Source::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// A connection string that cannot be parsed, or settings that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The connection string is longer than [`crate::MAX_CONNINFO_LEN`].
    #[error("connection string is {len} bytes long, more than the limit of {limit}")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Keyword/value form: a keyword not followed by `=`.
    #[error("missing \"=\" after \"{keyword}\" in connection info string (at byte {offset})")]
    MissingEquals {
        /// The keyword read so far.
        keyword: String,
        /// Byte offset of the keyword.
        offset: usize,
    },
    /// Keyword/value form: what follows a password value does not parse. The text is not
    /// quoted because it is most likely the rest of a badly quoted password.
    #[error(
        "malformed connection info string after the value of \"{keyword}\" (at byte {offset}): check its \
         quoting (inside single quotes, write \\' for a quote and \\\\ for a backslash)"
    )]
    MalformedAfterSecret {
        /// The secret's keyword (`password` or `sslpassword`).
        keyword: &'static str,
        /// Byte offset where parsing failed.
        offset: usize,
    },
    /// Keyword/value form: a quote never closed.
    #[error("unterminated quoted string in connection info string (quote opened at byte {offset})")]
    UnterminatedQuote {
        /// Byte offset of the opening quote.
        offset: usize,
    },
    /// A keyword libpq does not know.
    #[error("invalid connection option \"{keyword}\"")]
    InvalidOption {
        /// The keyword, as written.
        keyword: String,
    },
    /// A URI query parameter libpq does not know.
    #[error("invalid URI query parameter: \"{keyword}\"")]
    InvalidUriParameter {
        /// The decoded parameter name.
        keyword: String,
    },
    /// A libpq keyword this client does not implement (service files, GSSAPI, ...).
    #[error("connection option \"{keyword}\" is not supported by this client")]
    UnsupportedOption {
        /// The keyword.
        keyword: String,
    },
    /// A URI query parameter without `=`.
    #[error("missing key/value separator \"=\" in URI query parameter: \"{param}\" (at byte {offset})")]
    UriMissingSeparator {
        /// The raw parameter text (never a secret: values follow the `=`).
        param: String,
        /// Byte offset of the parameter.
        offset: usize,
    },
    /// A URI query parameter with two `=`.
    #[error("extra key/value separator \"=\" in URI query parameter \"{keyword}\" (at byte {offset})")]
    UriExtraSeparator {
        /// The raw parameter name.
        keyword: String,
        /// Byte offset of the second `=`.
        offset: usize,
    },
    /// A `[` in a URI host without its `]`.
    #[error(
        "end of string reached when looking for matching \"]\" in IPv6 host address in URI (opened at byte {offset})"
    )]
    UriUnterminatedIpv6 {
        /// Byte offset of the `[`.
        offset: usize,
    },
    /// `[]` in a URI.
    #[error("IPv6 host address may not be empty in URI (at byte {offset})")]
    UriEmptyIpv6 {
        /// Byte offset of the `[`.
        offset: usize,
    },
    /// Something other than `:`, `/`, `?` or `,` after `]`.
    #[error("unexpected character {ch:?} at byte {offset} in URI (expected \":\" or \"/\")")]
    UriUnexpectedChar {
        /// The character.
        ch: char,
        /// Its byte offset.
        offset: usize,
    },
    /// Bad `%xx` escape, `%00`, undecodable UTF-8 or unencoded spaces in a URI part.
    #[error("{reason} in URI {part} (at byte {offset})")]
    UriDecode {
        /// Which part: `user`, `password`, `host`, `port`, `dbname`, `query parameter "x"`.
        part: String,
        /// What is wrong.
        reason: &'static str,
        /// Byte offset of the offending part in the URI.
        offset: usize,
    },
    /// A value that is not one of the accepted spellings.
    #[error("invalid value \"{value}\" for {origin} (expected {expected})")]
    InvalidValue {
        /// Where it came from.
        origin: Source,
        /// The value (never a secret).
        value: String,
        /// What is accepted.
        expected: &'static str,
    },
    /// A port that is not an integer in 1..=65535.
    #[error("invalid port number \"{value}\" in {origin} (expected 1 to 65535)")]
    InvalidPort {
        /// Where it came from.
        origin: Source,
        /// The port entry.
        value: String,
    },
    /// A `hostaddr` entry that is not a numeric IPv4/IPv6 address.
    #[error("could not parse network address \"{value}\" in {origin}")]
    InvalidHostAddr {
        /// Where it came from.
        origin: Source,
        /// The entry.
        value: String,
    },
    /// A value containing a NUL byte (it cannot travel in a C string or a startup packet).
    #[error("{origin} contains a NUL byte")]
    NulByte {
        /// Where it came from.
        origin: Source,
    },
    /// `port` lists neither one port nor one per host.
    #[error("could not match {ports} port numbers to {hosts} hosts")]
    PortCountMismatch {
        /// Number of port entries.
        ports: usize,
        /// Number of hosts.
        hosts: usize,
    },
    /// `host` and `hostaddr` list different numbers of entries.
    #[error("could not match {hosts} host names to {hostaddrs} hostaddr values")]
    HostCountMismatch {
        /// Number of host entries.
        hosts: usize,
        /// Number of hostaddr entries.
        hostaddrs: usize,
    },
    /// No user given and the OS user name is unknown.
    #[error("could not determine the user name: set user (or PGUSER)")]
    NoUser,
    /// `sslmode=verify-full` with a target known only by `hostaddr`.
    #[error(
        "sslmode=verify-full needs a host name to check the certificate against, but target {index} has only hostaddr \"{hostaddr}\": set host as well"
    )]
    VerifyFullWithoutHostName {
        /// Zero-based index of the target.
        index: usize,
        /// Its address.
        hostaddr: String,
    },
    /// `sslnegotiation=direct` with a mode that could fall back to plaintext.
    #[error(
        "weak sslmode \"{mode}\" may not be used with sslnegotiation=direct (use \"require\", \"verify-ca\", or \"verify-full\")"
    )]
    WeakSslModeForDirect {
        /// The sslmode.
        mode: crate::SslMode,
    },
    /// `sslrootcert=system` with a mode other than verify-full.
    #[error("weak sslmode \"{mode}\" may not be used with sslrootcert=system (use \"verify-full\")")]
    WeakSslModeForSystemRoots {
        /// The sslmode.
        mode: crate::SslMode,
    },
    /// `ssl_min_protocol_version` above `ssl_max_protocol_version`.
    #[error("invalid SSL protocol version range: {min} to {max}")]
    InvalidTlsVersionRange {
        /// The minimum.
        min: crate::TlsVersion,
        /// The maximum.
        max: crate::TlsVersion,
    },
}
