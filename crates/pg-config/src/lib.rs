//! The one libpq-compatible connection configuration of the project.
//!
//! Every component that talks to PostgreSQL (the native replication client, the metadata
//! collector, the pg_dump driver, the Plakar plugin options, the CLI) reads its settings
//! through [`Config`], so a connection string means the same thing everywhere, and the same
//! thing as in `psql`.
//!
//! - **Parsing** ([`Config::parse`]): both forms of libpq-connect.html §34.1.1, the
//!   keyword/value form (`host=db port=5432 password='it\'s'`, with libpq's quoting and
//!   backslash escapes) and the URI form (`postgresql://user:pw@h1:5432,h2/db?sslmode=require`,
//!   percent-decoded everywhere, IPv6 in brackets, sockets as `host=%2Ftmp` or `?host=/tmp`).
//!   Unknown keywords are errors (`invalid connection option "foo"`).
//! - **Resolution** ([`Config::resolve_with`], [`Config::resolve`]): explicit values, else the
//!   `PG*` environment variables (libpq-envars.html), else libpq's defaults; password from the
//!   passfile (libpq-pgpass.html) when none is given. The environment is an injectable
//!   [`Env`], so tests never touch the process environment.
//! - **Output** ([`ResolvedConfig`]): the [`Target`]s to try (TCP or Unix socket, with the
//!   socket file path), the [startup parameters](ResolvedConfig::startup_params), the
//!   [`TlsSettings`], and hand-off to libpq child processes
//!   ([`ResolvedConfig::to_libpq_env`], [`ResolvedConfig::to_keyword_string_without_password`],
//!   [`ResolvedConfig::passfile_contents`]) that keeps the password off argv.
//! - **Secrets**: passwords are [`Password`]s; `Debug` and `Display` of every type here
//!   redact them; [`Config::redacted_uri`] is for logs.
//!
//! No network IO happens here; resolution reads the passfile and checks whether the default
//! client certificate files exist.
//!
//! # Examples
//!
//! ```
//! use pg_config::{Config, Env, HostSpec, Replication, SslMode};
//!
//! let cfg = Config::parse("postgresql://replicator:s%40cret@db1:5433,db2/app?sslmode=verify-full&replication=true")?;
//! let env = Env::empty().with_os_user(Some("backup"));
//! let resolved = cfg.resolve_with(&env)?;
//!
//! assert_eq!(resolved.targets.len(), 2);
//! assert_eq!(resolved.targets[0].port, 5433);
//! assert_eq!(resolved.targets[1].port, 5432);
//! assert_eq!(resolved.targets[0].tls_server_name(), Some("db1"));
//! assert_eq!(resolved.targets[0].password().map(|p| p.expose()), Some("s@cret"));
//! assert_eq!(resolved.tls.mode, SslMode::VerifyFull);
//! assert_eq!(resolved.replication, Replication::Physical);
//! assert_eq!(
//!     resolved.startup_params(),
//!     vec![("user", "replicator".into()), ("database", "app".into()), ("replication", "true".into())]
//! );
//! // The password never shows in logs.
//! assert!(!format!("{cfg:?} {cfg} {resolved:?}").contains("s@cret"));
//! assert_eq!(cfg.redacted_uri(), "postgresql://replicator:********@db1:5433,db2:/app?replication=true&sslmode=verify-full");
//! # Ok::<(), pg_config::ConfigError>(())
//! ```
//!
//! Keyword/value form, Unix socket, defaults from the environment:
//!
//! ```
//! use pg_config::{Config, Env, HostSpec};
//!
//! let cfg = Config::parse("host=/tmp port=5433 dbname='my db'")?;
//! let env = Env::empty().with_var("PGUSER", "alice").with_var("PGPORT", "6000");
//! let resolved = cfg.resolve_with(&env)?;
//! assert_eq!(resolved.user, "alice");
//! assert_eq!(resolved.targets[0].socket_path().unwrap().to_str(), Some("/tmp/.s.PGSQL.5433"));
//! assert_eq!(resolved.dbname, "my db");
//! # Ok::<(), pg_config::ConfigError>(())
//! ```
//!
//! Handing a configuration to `pg_dump` without putting the password on its command line:
//!
//! ```no_run
//! use pg_config::{Config, LIBPQ_ENV_VARS};
//!
//! let mut cfg = Config::parse("postgresql://u:pw@db/postgres")?;
//! cfg.set_dbname("a database=with odd name")?; // a value, never re-parsed
//! let resolved = cfg.resolve()?;
//! let mut cmd = std::process::Command::new("pg_dump");
//! for var in LIBPQ_ENV_VARS {
//!     cmd.env_remove(var);
//! }
//! cmd.envs(resolved.to_libpq_env()); // PGHOST, PGPORT, PGDATABASE, PGPASSWORD, ...
//! # Ok::<(), pg_config::ConfigError>(())
//! ```
//!
//! # Differences from libpq
//!
//! - `~/` at the start of a file parameter (`passfile`, `sslcert`, ...) is expanded.
//! - Keywords libpq knows but this client does not implement (`service`, `require_auth`,
//!   `sslcrldir`, GSSAPI and OAuth options, ...) are errors, not silently ignored; their
//!   environment variables produce a [`Warning`].
//! - `sslsni` must be `0` or `1`; `client_encoding=auto` and `gssencmode=require` are refused.
//! - A URI part that percent-decodes to invalid UTF-8 is an error.

mod config;
mod env;
mod error;
mod param;
mod parse;
mod passfile;
mod resolve;
mod secret;
mod values;

pub use config::{Config, MAX_CONNINFO_LEN, quote_conninfo_value};
pub use env::{DEFAULT_HOST, DEFAULT_PORT, DEFAULT_SOCKET_DIR, Env};
pub use error::{ConfigError, Source};
pub use param::Param;
pub use passfile::{MAX_PASSFILE_LINE, escape_passfile_field};
pub use resolve::{
    HostSpec, Keepalives, LIBPQ_ENV_VARS, ResolvedConfig, RootCert, Target, TlsSettings, Warning,
};
pub use secret::Password;
pub use values::{
    ChannelBinding, GssEncMode, Replication, SslMode, SslNegotiation, TargetSessionAttrs, TlsVersion,
};

#[doc(hidden)]
pub mod fuzzing;

#[cfg(test)]
mod tests;
