//! The production [`Connector`]: the project's own connection crate, `pg-conn`.

use pg_config::Config;

use crate::{Connector, QueryError, Row, Session};

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
    /// A connector using `config` (whatever database it names is replaced per connection).
    pub fn new(config: Config) -> Self {
        Self { config }
    }
}

/// `pg-conn`'s error as a [`QueryError`]: its message (which never holds a password) and the
/// server's SQLSTATE.
fn query_error(e: &pg_conn::Error) -> QueryError {
    QueryError { sqlstate: e.code().map(str::to_owned), message: e.to_string() }
}

impl Connector for PgConnector {
    type Session = pg_conn::Client;

    async fn connect(&self, dbname: &str) -> Result<pg_conn::Client, QueryError> {
        let mut config = self.config.clone();
        config.set_dbname(dbname).map_err(|e| QueryError::client(format!("database {dbname:?}: {e}")))?;
        pg_conn::Client::connect(&config).await.map_err(|e| query_error(&e))
    }
}

impl Session for pg_conn::Client {
    async fn query(&mut self, sql: &str) -> Result<Vec<Row>, QueryError> {
        let rows = self.simple_query(sql).await.map_err(|e| query_error(&e))?;
        Ok(rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.get_bytes(i).map(|b| String::from_utf8_lossy(b).into_owned()))
                    .collect()
            })
            .collect())
    }

    async fn close(self) {
        let _ = pg_conn::Client::close(self).await;
    }
}
