//! The `/manifest.json` collector: cluster metadata, schema version 2.
//!
//! [`collect`] reads what a backup's manifest records (settings, roles, tablespaces, databases
//! and, per database, extensions, schemas and relations with their columns, constraints and
//! indexes) with version-aware catalog queries for PostgreSQL 12-18 (`sql.rs`), and
//! [`write_manifest`] emits it as the first record of a backup. The JSON field names and types
//! are those of the Go plugin (see `docs/manifest.md` and `docs/manifest.schema.json`), with its
//! known defects fixed and one addition that matters most: `collection_errors`, the list of what
//! could not be collected and why.
//!
//! Collection is best-effort. Only the first connection and the server version are mandatory;
//! any other query that fails (no privilege, a database that refuses connections, the overall
//! deadline) leaves its part out and adds a [`CollectionError`] with the SQLSTATE.
//!
//! The collector talks to the server over the project's own connection crate, `pg-conn`
//! ([`PgConnector`]): ordinary (never replication) sessions, text-mode simple queries, one
//! session per detailed database. [`MetadataSource`] is the [`record_sink::Source`] that the
//! orchestrator (`backup-plan`) runs first in every backup; [`collect_for`] and
//! [`write_manifest`] are its two halves for callers that need the manifest itself.

mod collect;
mod model;
mod pgconn;
mod sql;
mod time;

#[doc(hidden)]
pub mod fuzzing {
    //! Entry point of the `timestamp` fuzz target, also replayed by the crate's tests.

    /// The server timestamp normaliser of the metadata collector: `Some` only for the exact
    /// `YYYY-MM-DDTHH:MI:SS.USZ` shape, and then the same instant with the fraction's trailing
    /// zeros dropped (padding them back gives the input).
    pub fn timestamp(data: &[u8]) {
        let Ok(text) = std::str::from_utf8(data) else { return };
        let Some(out) = crate::time::normalize_server_timestamp(text) else { return };
        assert_eq!(text.len(), 27);
        assert!(out.ends_with('Z') && out.starts_with(&text[..19]), "{text:?} -> {out:?}");
        let frac = out[19..out.len() - 1].strip_prefix('.').unwrap_or("");
        assert!(!frac.ends_with('0') && frac.len() <= 6, "{out:?}");
        assert_eq!(format!("{}.{frac:0<6}Z", &out[..19]), text, "normalising changed the instant");
    }
}
mod write;

pub use collect::{CollectOptions, DEFAULT_DEADLINE, DEFAULT_ROW_LIMIT, Kind, collect, collect_for};
pub use model::{
    CONNECTOR_LOGICAL, CONNECTOR_PHYSICAL, ClusterConfig, ClusterManifest, CollectionError, Column,
    Constraint, DUMP_FORMAT_BASEBACKUP, DUMP_FORMAT_CUSTOM, Database, DumpOptions, Extension, Index,
    Relation, Role, SCHEMA_VERSION, Schema, Tablespace,
};
pub use pgconn::PgConnector;
pub use time::rfc3339_utc;
pub use write::{MANIFEST_PATH, MetadataSource, manifest_json, write_manifest};

/// The name and version this project records as `client` in a physical backup's manifest,
/// e.g. `pg_plakar/0.1.0`.
pub fn client_name() -> String {
    format!("pg_plakar/{}", env!("CARGO_PKG_VERSION"))
}

/// One result row of a text-mode simple query: each column's text, `None` for SQL NULL.
pub(crate) type Row = Vec<Option<String>>;

/// A failed query or connection, as the collector records it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    /// The server's SQLSTATE, when the server reported the error.
    pub sqlstate: Option<String>,
    /// What went wrong. Must never contain a password (the connection layer guarantees it).
    pub message: String,
}

impl QueryError {
    /// An error the server reported with SQLSTATE `code`.
    pub fn server(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self { sqlstate: Some(code.into()), message: message.into() }
    }

    /// An error without a SQLSTATE (I/O, protocol, timeout).
    pub fn client(message: impl Into<String>) -> Self {
        Self { sqlstate: None, message: message.into() }
    }
}

/// Why no manifest could be produced at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// The first connection failed.
    #[error("connecting to database {database:?} for the manifest: {error}")]
    Connect {
        /// The database.
        database: String,
        /// The underlying error.
        error: QueryError,
    },
    /// The server version could not be read.
    #[error("querying server version: {0}")]
    ServerVersion(QueryError),
    /// The overall deadline passed before the mandatory part was collected.
    #[error("the manifest's deadline of {0:?} passed before the server version was read")]
    Deadline(std::time::Duration),
    /// The manifest could not be serialised (a bug).
    #[error("serialising the manifest: {0}")]
    Json(serde_json::Error),
    /// The sink refused the record.
    #[error("writing /manifest.json: {0}")]
    Sink(record_sink::SinkError),
}

// The messages above show their cause, so none is returned again from `source()` (a chain
// printer would show it twice); these keep `?` working.
impl From<serde_json::Error> for CollectError {
    fn from(e: serde_json::Error) -> Self {
        Self::Json(e)
    }
}

impl From<record_sink::SinkError> for CollectError {
    fn from(e: record_sink::SinkError) -> Self {
        Self::Sink(e)
    }
}
