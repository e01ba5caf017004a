//! A [`Connector`] over `psql`, for tests only, until `pg-conn` provides a `Client`.
//!
//! It runs each query as its own `psql -c` against the real server (text results, the server's
//! SQLSTATE from `VERBOSITY=verbose`), so the collector's SQL and assembly are exercised against
//! real PostgreSQL 12-18. The production connector is the `pg-conn` one.

use std::path::PathBuf;
use std::process::Stdio;

use pg_catalog::{Connector, QueryError, Row, Session};
use tokio::process::Command;

const FIELD: char = '\u{1f}';
const RECORD: char = '\u{1e}';
const NULL: &str = "\u{1}NULL\u{1}";

/// Connects as `user` over TCP to 127.0.0.1:`port`.
#[derive(Clone, Debug)]
pub struct PsqlConnector {
    pub psql: PathBuf,
    pub port: u16,
    pub user: String,
}

/// A "session": the database to run each query in.
#[derive(Debug)]
pub struct PsqlSession {
    connector: PsqlConnector,
    database: String,
}

impl PsqlConnector {
    async fn run(&self, database: &str, sql: &str) -> Result<Vec<Row>, QueryError> {
        // A sentinel last column tells one row holding '' from no row at all.
        let wrapped = format!("SELECT q.*, 'x' FROM ({sql}) q");
        let out = Command::new(&self.psql)
            .env_clear()
            .env("PGCONNECT_TIMEOUT", "10")
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-v", "VERBOSITY=verbose"])
            .arg("-F")
            .arg(FIELD.to_string())
            .arg("-R")
            .arg(RECORD.to_string())
            .arg("-P")
            .arg(format!("null={NULL}"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", &self.user, "-d", database])
            .arg("-c")
            .arg(&wrapped)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| QueryError::client(format!("spawning psql: {e}")))?;
        if !out.status.success() {
            return Err(parse_error(&String::from_utf8_lossy(&out.stderr)));
        }
        let text = String::from_utf8(out.stdout).map_err(|e| QueryError::client(e.to_string()))?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if text.is_empty() {
            return Ok(Vec::new());
        }
        Ok(text
            .split(RECORD)
            .map(|record| {
                let mut fields: Vec<Option<String>> =
                    record.split(FIELD).map(|f| (f != NULL).then(|| f.to_owned())).collect();
                assert_eq!(fields.pop(), Some(Some("x".to_owned())), "sentinel column in {record:?}");
                fields
            })
            .collect())
    }
}

/// `psql:…: ERROR:  42501: permission denied …` → SQLSTATE and message.
///
/// psql never prints the SQLSTATE of a failed connection (the server sends it in the startup
/// ErrorResponse, which `pg-conn` will pass on): the two startup errors the tests provoke are
/// recognised by the server's message instead.
fn parse_error(stderr: &str) -> QueryError {
    let err = parse_error_line(stderr);
    if err.sqlstate.is_none() {
        let msg = &err.message;
        if msg.starts_with("database \"") && msg.ends_with("\" does not exist") {
            return QueryError::server("3D000", msg.clone());
        }
        if msg.starts_with("permission denied for database") {
            return QueryError::server("42501", msg.clone());
        }
    }
    err
}

fn parse_error_line(stderr: &str) -> QueryError {
    for line in stderr.lines() {
        for level in ["ERROR:  ", "FATAL:  "] {
            if let Some(at) = line.find(level) {
                let rest = &line[at + level.len()..];
                if let Some((code, msg)) = rest.split_once(": ")
                    && code.len() == 5
                    && code.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
                {
                    return QueryError::server(code, msg.trim());
                }
                return QueryError::client(rest.trim());
            }
        }
    }
    QueryError::client(stderr.trim())
}

impl Connector for PsqlConnector {
    type Session = PsqlSession;

    async fn connect(&self, dbname: &str) -> Result<PsqlSession, QueryError> {
        self.run(dbname, "SELECT 1").await?;
        Ok(PsqlSession { connector: self.clone(), database: dbname.to_owned() })
    }
}

impl Session for PsqlSession {
    async fn query(&mut self, sql: &str) -> Result<Vec<Row>, QueryError> {
        self.connector.run(&self.database, sql).await
    }

    async fn close(self) {}
}
