//! The collector's connection: the project's own client, `pg-conn` (text-mode simple queries
//! over ordinary, non-replication sessions; no psql, no libpq).

use pg_config::{Config, Replication};
use pg_conn::Client;

use crate::{QueryError, Row};

/// Opens ordinary sessions with the backup's connection configuration, changing only the
/// database (through `pg-config`'s safe setter, so a database name is never parsed as
/// connection options).
#[derive(Clone)]
pub struct PgConnector {
    config: Config,
}

impl std::fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the configuration itself: it may hold a password.
        f.debug_struct("PgConnector")
            .field("config", &self.config.to_keyword_string_without_password())
            .finish()
    }
}

impl PgConnector {
    /// A connector using `config`: whatever database it names is replaced per connection, and
    /// a `replication` setting is dropped (the catalog queries need a normal backend; a physical
    /// backup hands over its replication configuration as is).
    pub fn new(mut config: Config) -> Self {
        config.set_replication(Replication::Off);
        Self { config }
    }

    /// Opens a normal session to database `dbname`.
    pub(crate) async fn connect(&self, dbname: &str) -> Result<Client, QueryError> {
        let mut config = self.config.clone();
        config.set_dbname(dbname).map_err(|e| QueryError::client(format!("database {dbname:?}: {e}")))?;
        Client::connect(&config).await.map_err(|e| query_error(&e))
    }
}

/// `pg-conn`'s error as a [`QueryError`], SQLSTATE from `Error::code`. A query's error is the
/// server's message alone; any other error (a refused connection, I/O, TLS) is pg-conn's whole
/// description, which names the server and the step (and never holds a password).
fn query_error(e: &pg_conn::Error) -> QueryError {
    let message = match e.kind() {
        pg_conn::ErrorKind::Db(db) => db.message.clone(),
        _ => e.to_string(),
    };
    QueryError { sqlstate: e.code().map(str::to_owned), message }
}

/// Runs one text-mode simple query and returns all its rows (text decoded as UTF-8: pg-conn
/// asks for `client_encoding=UTF8`, so the server converts every database's text).
pub(crate) async fn query(client: &mut Client, sql: &str) -> Result<Vec<Row>, QueryError> {
    let rows = client.simple_query(sql).await.map_err(|e| query_error(&e))?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.get_bytes(i).map(|b| String::from_utf8_lossy(b).into_owned()))
                .collect()
        })
        .collect())
}

/// Ends a session politely (`Terminate`); errors are of no interest at that point.
pub(crate) async fn close(client: Client) {
    if let Err(e) = client.close().await {
        tracing::debug!("closing a manifest session: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let config = Config::parse("host=db user=backup password=s3cr3t-pw dbname=x").unwrap();
        let shown = format!("{:?}", PgConnector::new(config));
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("host=db") && shown.contains("user=backup"), "{shown}");
    }

    #[test]
    fn a_replication_configuration_gives_normal_sessions() {
        for setting in ["true", "database", "on"] {
            let config = Config::parse(&format!("host=db replication={setting}")).unwrap();
            let connector = PgConnector::new(config);
            assert_eq!(connector.config.replication(), Some(Replication::Off), "{setting}");
            let resolved = connector.config.resolve().unwrap();
            assert_eq!(resolved.replication, Replication::Off, "{setting}");
        }
    }
}
