//! The collector: runs the catalog queries of `sql.rs` and assembles a [`ClusterManifest`].
//!
//! Best-effort rules (fixing the Go plugin's M1-M5, M7): only the first connection and the server
//! version are fatal; every other failure leaves its part out and appends a
//! [`CollectionError`]; each per-database query stands alone (one failing does not abort the
//! others); lists are joined on OIDs, never on `schema.name` text.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, SystemTime};

use pg_config::Config;

use tokio::time::Instant;

use crate::model::*;
use crate::time::{format_epoch, normalize_server_timestamp};
use pg_conn::Client;

use crate::pgconn::{close, query};
use crate::{CollectError, PgConnector, QueryError, Row, rfc3339_utc, sql};

/// Default bound on the whole collection.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

/// Default bound on the rows one per-database query may return (relations, columns,
/// constraints, indexes): the manifest is built in memory, so a catalog with millions of
/// objects is truncated (and says so in `collection_errors`) rather than exhausting memory.
pub const DEFAULT_ROW_LIMIT: usize = 200_000;

/// What kind of backup the manifest describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `postgres://`: `pg_dump` in custom format.
    Logical {
        /// `pg_dump --version`, trimmed (None if it could not be run).
        pg_dump_version: Option<String>,
        /// The dump options.
        options: DumpOptions,
    },
    /// `postgres+bin://`: a base backup through the native replication client.
    Physical {
        /// The client's name and version, normally [`crate::client_name`].
        client: String,
    },
}

/// What [`collect`] needs besides a [`PgConnector`].
#[derive(Clone, Debug)]
pub struct CollectOptions {
    /// The kind of backup.
    pub kind: Kind,
    /// The host, as configured (recorded, not used to connect).
    pub host: String,
    /// The port, as configured (recorded, not used to connect).
    pub port: String,
    /// Logical single-database backups: the database. The first connection goes there; without
    /// it, to `postgres` (or `template1` if `postgres` does not exist).
    pub database: Option<String>,
    /// Bound on the whole collection; what is not collected by then is listed in
    /// `collection_errors`.
    pub deadline: Duration,
    /// Bound on the rows of each per-database query (see [`DEFAULT_ROW_LIMIT`]).
    pub row_limit: usize,
}

impl CollectOptions {
    /// Options for a physical backup, with the default deadline and row limit.
    pub fn physical(host: impl Into<String>, port: impl Into<String>) -> Self {
        Self {
            kind: Kind::Physical { client: crate::client_name() },
            host: host.into(),
            port: port.into(),
            database: None,
            deadline: DEFAULT_DEADLINE,
            row_limit: DEFAULT_ROW_LIMIT,
        }
    }

    /// Options for a logical backup of `database` (None: the whole cluster).
    pub fn logical(
        host: impl Into<String>,
        port: impl Into<String>,
        database: Option<String>,
        pg_dump_version: Option<String>,
        options: DumpOptions,
    ) -> Self {
        Self {
            kind: Kind::Logical { pg_dump_version, options },
            host: host.into(),
            port: port.into(),
            database,
            deadline: DEFAULT_DEADLINE,
            row_limit: DEFAULT_ROW_LIMIT,
        }
    }
}

/// Collects the manifest over ordinary sessions opened with `config` (its database is replaced
/// per session and a `replication` setting is ignored, so a physical backup's configuration can
/// be passed as is). The convenience entry point for binaries; see [`collect`].
pub async fn collect_for(config: &Config, options: &CollectOptions) -> Result<ClusterManifest, CollectError> {
    collect(&PgConnector::new(config.clone()), options).await
}

/// Collects the manifest. `created_at` is left empty: [`crate::write_manifest`] stamps it at
/// emission.
///
/// Fails only if the first connection or the server-version query fails (or the deadline passes
/// before them); everything else is best-effort and reported in `collection_errors`.
pub async fn collect(
    connector: &PgConnector,
    options: &CollectOptions,
) -> Result<ClusterManifest, CollectError> {
    let started = SystemTime::now();
    let mut c = Collector {
        deadline: Instant::now() + options.deadline,
        deadline_len: options.deadline,
        expired: false,
        row_limit: options.row_limit.max(1),
        errors: Vec::new(),
    };

    let (main_db, mut main) = c.first_connection(connector, options).await?;
    let (server_version, version_num) = c.server_version(&mut main).await?;

    let mut m = ClusterManifest {
        version: SCHEMA_VERSION,
        host: options.host.clone(),
        port: options.port.clone(),
        server_version,
        server_version_num: version_num,
        database: options.database.clone(),
        collection_started_at: Some(rfc3339_utc(started)),
        ..ClusterManifest::default()
    };
    match &options.kind {
        Kind::Logical { pg_dump_version, options } => {
            m.connector = CONNECTOR_LOGICAL.into();
            m.dump_format = DUMP_FORMAT_CUSTOM.into();
            m.pg_dump_version = pg_dump_version.clone().filter(|v| !v.is_empty());
            m.options = Some(options.clone());
        }
        Kind::Physical { client } => {
            m.connector = CONNECTOR_PHYSICAL.into();
            m.dump_format = DUMP_FORMAT_BASEBACKUP.into();
            m.client = Some(client.clone());
        }
    }

    if let Some(rows) = c.run(&mut main, "cluster_system_identifier", None, sql::SYSTEM_IDENTIFIER).await {
        m.cluster_system_identifier =
            c.first(rows, "cluster_system_identifier", None).and_then(|r| opt(&r, 0));
    }
    if let Some(rows) = c.run(&mut main, "in_recovery", None, sql::IN_RECOVERY).await {
        m.in_recovery = c.first(rows, "in_recovery", None).map(|r| flag(&r, 0));
    }
    m.cluster_config = c.cluster_config(&mut main, version_num).await;
    m.roles = c.roles(&mut main).await;
    if let Some(rows) = c.run(&mut main, "tablespaces", None, sql::TABLESPACES).await {
        m.tablespaces = c.tablespaces(rows);
    }
    if let Some(rows) = c.run(&mut main, "databases", None, &sql::databases(version_num)).await {
        m.databases = c.databases(rows);
    }

    // Which databases get detail: the target only (even a template) in single-database mode;
    // otherwise every connectable non-template database.
    let detailed: Vec<usize> = match &options.database {
        Some(target) => match m.databases.iter().position(|d| &d.name == target) {
            Some(i) => {
                m.databases = vec![m.databases.swap_remove(i)];
                vec![0]
            }
            None => Vec::new(),
        },
        None => (0..m.databases.len())
            .filter(|&i| m.databases[i].allow_conn && !m.databases[i].is_template)
            .collect(),
    };
    for i in detailed {
        let name = m.databases[i].name.clone();
        if name == main_db {
            c.database_detail(&mut main, &mut m.databases[i]).await;
        } else if let Some(mut session) = c.connect(connector, &name).await {
            c.database_detail(&mut session, &mut m.databases[i]).await;
            close(session).await;
        }
    }
    close(main).await;

    m.collection_finished_at = Some(rfc3339_utc(SystemTime::now()));
    m.collection_errors = c.errors;
    Ok(m)
}

/// State of one collection.
struct Collector {
    deadline: Instant,
    deadline_len: Duration,
    expired: bool,
    row_limit: usize,
    errors: Vec<CollectionError>,
}

impl Collector {
    fn error(&mut self, section: &str, database: Option<&str>, err: QueryError) {
        tracing::debug!(section, database, sqlstate = err.sqlstate.as_deref(), "manifest: {}", err.message);
        self.errors.push(CollectionError {
            section: section.to_owned(),
            database: database.map(str::to_owned),
            error: err.message,
            sqlstate: err.sqlstate,
        });
    }

    fn deadline_error(&self) -> QueryError {
        QueryError::client(format!(
            "not collected: the manifest's overall deadline of {} s passed",
            self.deadline_len.as_secs_f64()
        ))
    }

    /// Runs `sql`; on failure records it under `section` and returns None. After the deadline,
    /// records the section as not collected without querying.
    async fn run(
        &mut self,
        session: &mut Client,
        section: &str,
        database: Option<&str>,
        sql: &str,
    ) -> Option<Vec<Row>> {
        if self.expired {
            self.error(section, database, self.deadline_error());
            return None;
        }
        match tokio::time::timeout_at(self.deadline, query(session, sql)).await {
            Ok(Ok(rows)) => Some(rows),
            Ok(Err(e)) => {
                self.error(section, database, e);
                None
            }
            Err(_) => {
                self.expired = true;
                self.error(section, database, self.deadline_error());
                None
            }
        }
    }

    /// Like [`Collector::run`] for a bounded query built with `LIMIT row_limit + 1`: a result
    /// over the limit is truncated and recorded as incomplete.
    async fn run_bounded(
        &mut self,
        session: &mut Client,
        section: &str,
        database: &str,
        sql: impl FnOnce(usize) -> String,
    ) -> Option<Vec<Row>> {
        let limit = self.row_limit;
        let mut rows = self.run(session, section, Some(database), &sql(limit.saturating_add(1))).await?;
        if rows.len() > limit {
            rows.truncate(limit);
            self.error(
                section,
                Some(database),
                QueryError::client(format!(
                    "incomplete: more than {limit} rows (the row limit); the rest left out"
                )),
            );
        }
        Some(rows)
    }

    /// The single row of a one-row query, or an error entry.
    fn first(&mut self, rows: Vec<Row>, section: &str, database: Option<&str>) -> Option<Row> {
        let n = rows.len();
        let row = rows.into_iter().next();
        if row.is_none() || n != 1 {
            self.error(section, database, QueryError::client(format!("expected one row, got {n}")));
        }
        row
    }

    async fn connect(&mut self, connector: &PgConnector, database: &str) -> Option<Client> {
        if self.expired {
            self.error("connect", Some(database), self.deadline_error());
            return None;
        }
        match tokio::time::timeout_at(self.deadline, connector.connect(database)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.error("connect", Some(database), e);
                None
            }
            Err(_) => {
                self.expired = true;
                self.error("connect", Some(database), self.deadline_error());
                None
            }
        }
    }

    async fn first_connection(
        &mut self,
        connector: &PgConnector,
        options: &CollectOptions,
    ) -> Result<(String, Client), CollectError> {
        let mut candidates = vec![options.database.clone().unwrap_or_else(|| "postgres".to_owned())];
        if options.database.is_none() {
            candidates.push("template1".to_owned());
        }
        let mut last = None;
        for database in candidates {
            match tokio::time::timeout_at(self.deadline, connector.connect(&database)).await {
                Ok(Ok(session)) => return Ok((database, session)),
                // Only "database does not exist" moves on to template1.
                Ok(Err(e)) if e.sqlstate.as_deref() == Some("3D000") => last = Some((database, e)),
                Ok(Err(e)) => return Err(CollectError::Connect { database, error: e }),
                Err(_) => return Err(CollectError::Deadline(self.deadline_len)),
            }
        }
        let (database, source) = last.expect("at least one candidate was tried");
        Err(CollectError::Connect { database, error: source })
    }

    async fn server_version(&mut self, s: &mut Client) -> Result<(String, i64), CollectError> {
        let rows = match tokio::time::timeout_at(self.deadline, query(s, sql::SERVER_VERSION)).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => return Err(CollectError::ServerVersion(e)),
            Err(_) => return Err(CollectError::Deadline(self.deadline_len)),
        };
        let row = rows.first().ok_or_else(|| CollectError::ServerVersion(QueryError::client("no row")))?;
        let version = text(row, 0);
        let num = int(row, 1).map_err(CollectError::ServerVersion)?;
        Ok((version, num))
    }

    async fn cluster_config(&mut self, s: &mut Client, version_num: i64) -> Option<ClusterConfig> {
        let rows = self.run(s, "cluster_config", None, &sql::cluster_config(version_num)).await?;
        let mut settings: HashMap<String, String> = HashMap::new();
        for row in &rows {
            if let (Some(name), Some(setting)) = (opt(row, 0), opt(row, 1)) {
                settings.insert(name, setting);
            }
        }
        // A setting the user may not read is simply absent from pg_settings: ask for it directly
        // to record the server's own reason (42501 and the role it needs).
        for name in sql::cluster_settings(version_num) {
            if settings.contains_key(name) {
                continue;
            }
            let section = format!("cluster_config.{}", name.to_ascii_lowercase());
            if let Some(rows) = self.run(s, &section, None, &sql::current_setting(name)).await
                && let Some(value) = rows.first().and_then(|r| opt(r, 0))
            {
                settings.insert(name.to_owned(), value);
            }
        }
        let mut cfg = ClusterConfig::default();
        let take = |name: &str| settings.get(name).cloned();
        cfg.data_directory = take("data_directory");
        cfg.timezone = take("TimeZone");
        cfg.wal_level = take("wal_level");
        cfg.server_encoding = take("server_encoding");
        cfg.data_checksums = take("data_checksums").map(|v| v == "on");
        cfg.shared_preload_libraries = take("shared_preload_libraries").filter(|v| !v.is_empty());
        cfg.lc_collate = take("lc_collate");
        cfg.lc_ctype = take("lc_ctype");
        cfg.archive_mode = take("archive_mode");
        // Only whether it is set: the command may hold credentials.
        cfg.archive_command_set = take("archive_command").map(|v| !v.is_empty() && v != "(disabled)");
        cfg.archive_library = take("archive_library").filter(|v| !v.is_empty());
        let ints = [
            ("max_connections", &mut cfg.max_connections),
            ("block_size", &mut cfg.block_size),
            ("wal_block_size", &mut cfg.wal_block_size),
        ];
        let mut bad = Vec::new();
        for (name, field) in ints {
            if let Some(v) = settings.get(name) {
                match v.parse::<i64>() {
                    Ok(n) => *field = Some(n),
                    Err(_) => bad.push(format!("setting {name}: {v:?} is not an integer")),
                }
            }
        }
        for msg in bad {
            self.error("cluster_config", None, QueryError::client(msg));
        }
        if version_num >= sql::since::NO_LC_SETTINGS
            && let Some(rows) = self.run(s, "cluster_config.lc_collate", None, sql::CURRENT_DB_LOCALE).await
            && let Some(row) = self.first(rows, "cluster_config.lc_collate", None)
        {
            cfg.lc_collate = opt(&row, 0);
            cfg.lc_ctype = opt(&row, 1);
        }
        Some(cfg)
    }

    async fn roles(&mut self, s: &mut Client) -> Vec<Role> {
        let Some(rows) = self.run(s, "roles", None, sql::ROLES).await else {
            return Vec::new();
        };
        let mut roles = Vec::with_capacity(rows.len());
        for row in &rows {
            let name = text(row, 0);
            let connection_limit = match int(row, 8) {
                Ok(n) => n,
                Err(e) => {
                    self.error("roles", None, QueryError::client(format!("role {name:?}: {e}")));
                    -1
                }
            };
            let valid_until = opt(row, 9).and_then(|t| {
                let norm = normalize_server_timestamp(&t);
                if norm.is_none() {
                    let msg =
                        format!("role {name:?}: valid_until {t:?} has no RFC 3339 form; written as null");
                    self.error("roles", None, QueryError::client(msg));
                }
                norm
            });
            roles.push(Role {
                name,
                superuser: flag(row, 1),
                replication: flag(row, 2),
                can_login: flag(row, 3),
                create_db: flag(row, 4),
                create_role: flag(row, 5),
                inherit: flag(row, 6),
                bypass_rls: flag(row, 7),
                connection_limit,
                valid_until,
                member_of: Vec::new(),
            });
        }
        if let Some(rows) = self.run(s, "role_memberships", None, sql::MEMBERSHIPS).await {
            let mut member_of: HashMap<String, BTreeSet<String>> = HashMap::new();
            for row in &rows {
                member_of.entry(text(row, 0)).or_default().insert(text(row, 1));
            }
            for role in &mut roles {
                if let Some(set) = member_of.remove(&role.name) {
                    role.member_of = set.into_iter().collect();
                }
            }
        }
        roles
    }

    fn tablespaces(&mut self, rows: Vec<Row>) -> Vec<Tablespace> {
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let name = text(row, 0);
            let options = self.json_list(row, 3, "tablespaces", None, &name);
            out.push(Tablespace { owner: text(row, 1), location: text(row, 2), options, name });
        }
        out
    }

    fn databases(&mut self, rows: Vec<Row>) -> Vec<Database> {
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let name = text(row, 0);
            let connection_limit = int(row, 7).unwrap_or_else(|e| {
                self.error("databases", None, QueryError::client(format!("database {name:?}: {e}")));
                -1
            });
            out.push(Database {
                owner: text(row, 1),
                encoding: text(row, 2),
                collate: text(row, 3),
                ctype: text(row, 4),
                allow_conn: flag(row, 5),
                is_template: flag(row, 6),
                connection_limit,
                default_tablespace: opt(row, 8),
                locale_provider: opt(row, 9).map(|p| provider_name(&p)),
                locale: opt(row, 10),
                name,
                ..Database::default()
            });
        }
        out
    }

    /// A `to_json(text[])` column as a list (NULL: empty); a malformed value is recorded.
    fn json_list(&mut self, row: &Row, i: usize, section: &str, db: Option<&str>, what: &str) -> Vec<String> {
        let Some(json) = opt(row, i) else { return Vec::new() };
        match serde_json::from_str::<Option<Vec<String>>>(&json) {
            Ok(list) => list.unwrap_or_default(),
            Err(e) => {
                self.error(section, db, QueryError::client(format!("{what}: unreadable list {json:?}: {e}")));
                Vec::new()
            }
        }
    }

    async fn database_detail(&mut self, s: &mut Client, db: &mut Database) {
        let name = db.name.clone();
        let dbn = Some(name.as_str());
        if let Some(rows) = self.run(s, "extensions", dbn, sql::EXTENSIONS).await {
            db.extensions = rows
                .iter()
                .map(|r| Extension { name: text(r, 0), version: text(r, 1), schema: text(r, 2) })
                .collect();
        }
        if let Some(rows) = self.run(s, "schemas", dbn, &sql::schemas()).await {
            db.schemas = rows.iter().map(|r| Schema { name: text(r, 0), owner: text(r, 1) }).collect();
        }
        let Some(rows) = self.run_bounded(s, "relations", &name, sql::relations).await else {
            return;
        };
        let mut by_oid: HashMap<String, usize> = HashMap::with_capacity(rows.len());
        let mut relations = Vec::with_capacity(rows.len());
        for row in &rows {
            let rel = self.relation(row, &name);
            by_oid.insert(text(row, 0), relations.len());
            relations.push(rel);
        }

        if let Some(rows) = self.run_bounded(s, "columns", &name, sql::columns).await {
            for row in &rows {
                let Some(&i) = by_oid.get(&text(row, 0)) else { continue };
                relations[i].columns.push(Column {
                    position: int(row, 1).unwrap_or_default(),
                    name: text(row, 2),
                    type_name: text(row, 3),
                    nullable: flag(row, 4),
                    default: opt(row, 5),
                    identity: opt(row, 6).and_then(|v| match v.as_str() {
                        "a" => Some("always".to_owned()),
                        "d" => Some("by default".to_owned()),
                        _ => None,
                    }),
                    generated: opt(row, 7).and_then(|v| match v.as_str() {
                        "s" => Some("stored".to_owned()),
                        "v" => Some("virtual".to_owned()),
                        _ => None,
                    }),
                });
            }
        }
        for rel in &mut relations {
            rel.column_count = rel.columns.len() as i64;
        }

        if let Some(rows) = self.run_bounded(s, "constraints", &name, sql::constraints).await {
            for row in &rows {
                let Some(&i) = by_oid.get(&text(row, 0)) else { continue };
                let con_name = text(row, 1);
                let columns = self.json_list(row, 3, "constraints", dbn, &con_name);
                relations[i].constraints.push(Constraint {
                    name: con_name,
                    kind: text(row, 2),
                    columns,
                    definition: opt(row, 4),
                });
            }
        }

        if let Some(rows) = self.run_bounded(s, "indexes", &name, sql::indexes).await {
            for row in &rows {
                let Some(&i) = by_oid.get(&text(row, 0)) else { continue };
                relations[i].indexes.push(Index {
                    name: text(row, 1),
                    method: text(row, 2),
                    definition: text(row, 3).replace(['\r', '\n'], " "),
                    is_unique: flag(row, 4),
                    is_primary: flag(row, 5),
                    is_valid: flag(row, 6),
                    is_partial: flag(row, 7),
                    is_expression: flag(row, 8),
                    constraint_name: opt(row, 9),
                });
            }
        }
        db.relations = relations;
    }

    fn relation(&mut self, row: &Row, database: &str) -> Relation {
        let schema = text(row, 1);
        let name = text(row, 2);
        let reltuples = int(row, 7).unwrap_or(0);
        let storage_options =
            self.json_list(row, 17, "relations", Some(database), &format!("relation {schema}.{name}"));
        let epoch = |i: usize| opt(row, i).and_then(|v| v.parse::<i64>().ok()).map(|s| format_epoch(s, 0));
        Relation {
            owner: text(row, 3),
            persistence: text(row, 4),
            kind: text(row, 5),
            tablespace: opt(row, 6),
            row_estimate: reltuples.max(0),
            // Only PG 14+ writes −1 (the query returns what the server has, so no version check
            // is needed: before 14 the value is never negative).
            row_estimate_unknown: reltuples < 0,
            live_row_estimate: int(row, 8).unwrap_or(0),
            has_primary_key: flag(row, 9),
            has_triggers: flag(row, 10),
            rls_enabled: flag(row, 11),
            rls_forced: flag(row, 12),
            is_partition: flag(row, 13),
            partition_parent: match (opt(row, 14), opt(row, 15)) {
                (Some(s), Some(n)) => Some(format!("{s}.{n}")),
                _ => None,
            },
            partition_strategy: opt(row, 16).map(|s| match s.as_str() {
                "r" => "range".to_owned(),
                "l" => "list".to_owned(),
                "h" => "hash".to_owned(),
                other => other.to_owned(),
            }),
            storage_options,
            last_vacuum: epoch(18),
            last_analyze: epoch(19),
            partition_key: opt(row, 20),
            partition_bound: opt(row, 21),
            schema,
            name,
            ..Relation::default()
        }
    }
}

/// Column `i` as text; NULL or missing as `""`.
fn text(row: &Row, i: usize) -> String {
    opt(row, i).unwrap_or_default()
}

/// Column `i`; None for NULL or missing.
fn opt(row: &Row, i: usize) -> Option<String> {
    row.get(i).cloned().flatten()
}

/// Column `i` as a boolean (`t`).
fn flag(row: &Row, i: usize) -> bool {
    row.get(i).and_then(Option::as_deref) == Some("t")
}

/// Column `i` as an integer.
fn int(row: &Row, i: usize) -> Result<i64, QueryError> {
    let v = row.get(i).and_then(Option::as_deref);
    v.and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| QueryError::client(format!("column {i}: {v:?} is not an integer")))
}

/// `datlocprovider` letter to its name.
fn provider_name(p: &str) -> String {
    match p {
        "c" => "libc".to_owned(),
        "i" => "icu".to_owned(),
        "b" => "builtin".to_owned(),
        other => other.to_owned(),
    }
}
