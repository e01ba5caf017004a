//! Options of a logical backup and of a logical restore, as the Plakar plugin receives them
//! (a `map[string]string`): parsed and validated before anything runs.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use pg_config::{Config, Param, Password, SslMode};

use crate::error::LogicalError;
use crate::tools::ToolSearch;

/// Keys of the connection options shared by backup and restore.
pub const CONNECTION_KEYS: &[&str] = &[
    "location",
    "host",
    "port",
    "username",
    "password",
    "database",
    "pg_bin_dir",
    "ssl_mode",
    "ssl_cert",
    "ssl_key",
    "ssl_root_cert",
    "ssl_cert_data",
    "ssl_key_data",
    "ssl_root_cert_data",
    "connect_timeout",
];

/// Keys only a backup accepts.
pub const BACKUP_KEYS: &[&str] = &["compress", "schema_only", "data_only", "exclude_databases"];

/// Keys only a restore accepts.
pub const RESTORE_KEYS: &[&str] =
    &["create_db", "restore_globals", "no_owner", "schema_only", "data_only", "exit_on_error"];

/// The connect timeout when neither `connect_timeout` nor `PGCONNECT_TIMEOUT` gives one (the Go
/// plugin's fixed value).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection settings: a libpq-compatible [`Config`] (from `location` and the individual keys;
/// the `PG*` environment fills the rest when it is resolved), inline PEM material still to be
/// written to private files, and where the client tools are.
#[derive(Clone)]
pub struct ConnectionOptions {
    /// The connection configuration, without the database (which each child gets as data).
    pub config: Config,
    /// The database named by `database` or the location's path, if any.
    pub database: Option<String>,
    /// Inline PEM contents (`ssl_cert_data`, `ssl_key_data`, `ssl_root_cert_data`), written to
    /// 0600 files in a private directory when the connection is prepared.
    pub inline_pem: Vec<(Param, Password)>,
    /// `pg_bin_dir`: the only directory the tools are taken from.
    pub pg_bin_dir: Option<PathBuf>,
    /// Where to look for client tools when `pg_bin_dir` is unset.
    pub tool_search: ToolSearch,
}

impl fmt::Debug for ConnectionOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionOptions")
            .field("config", &self.config)
            .field("database", &self.database)
            .field("inline_pem", &self.inline_pem.iter().map(|(p, _)| p.keyword()).collect::<Vec<_>>())
            .field("pg_bin_dir", &self.pg_bin_dir)
            .finish()
    }
}

/// Options of a logical backup (`postgres://` importer).
#[derive(Clone, Debug)]
pub struct BackupOptions {
    /// Connection settings; `database` selects a one-database backup.
    pub connection: ConnectionOptions,
    /// `compress`: keep `pg_dump`'s default compression (false: `-Z0`, let Plakar compress).
    pub compress: bool,
    /// `schema_only` (`-s`).
    pub schema_only: bool,
    /// `data_only` (`-a`).
    pub data_only: bool,
    /// `exclude_databases`: names (not patterns) left out of a whole-cluster dump.
    pub exclude_databases: Vec<String>,
}

/// Options of a logical restore (`postgres://` exporter).
#[derive(Clone, Debug)]
pub struct RestoreOptions {
    /// Connection settings of the target; `database` is the target of a single dump.
    pub connection: ConnectionOptions,
    /// `create_db`: `pg_restore -C`, connecting first to `postgres`.
    pub create_db: bool,
    /// `restore_globals`: feed `globals.sql` to `psql` before the dumps.
    pub restore_globals: bool,
    /// `no_owner` (`--no-owner`).
    pub no_owner: bool,
    /// `schema_only` (`-s`, pg_restore only).
    pub schema_only: bool,
    /// `data_only` (`-a`, pg_restore only).
    pub data_only: bool,
    /// `exit_on_error`: `pg_restore -e`; scripts fail on their first error (see the docs).
    pub exit_on_error: bool,
}

fn opt_err(option: &str, message: impl Into<String>) -> LogicalError {
    LogicalError::Option { option: option.to_owned(), message: message.into() }
}

/// A view of the option map where an empty value counts as unset (as in the Go plugin).
struct Map<'a>(&'a BTreeMap<String, String>);

impl<'a> Map<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0.get(key).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn bool(&self, key: &str) -> Result<bool, LogicalError> {
        match self.get(key) {
            None => Ok(false),
            Some(v) => parse_bool(v)
                .ok_or_else(|| opt_err(key, format!("{v:?} is not a boolean (use true/false, 1/0, t/f)"))),
        }
    }
}

/// Booleans as Go's `strconv.ParseBool` spells them.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn check_keys(map: &BTreeMap<String, String>, extra: &[&str]) -> Result<(), LogicalError> {
    for key in map.keys() {
        if !CONNECTION_KEYS.contains(&key.as_str()) && !extra.contains(&key.as_str()) {
            let mut allowed: Vec<&str> = CONNECTION_KEYS.iter().chain(extra).copied().collect();
            allowed.sort_unstable();
            return Err(opt_err(key, format!("unknown option; allowed: {}", allowed.join(", "))));
        }
    }
    Ok(())
}

impl ConnectionOptions {
    /// Parses the connection keys of `map` (see [`CONNECTION_KEYS`]).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, LogicalError> {
        let m = Map(map);
        let mut config = match m.get("location") {
            Some(loc) => {
                if !(loc.starts_with("postgres://") || loc.starts_with("postgresql://")) {
                    return Err(opt_err(
                        "location",
                        "must be postgres://[user[:password]@]host[:port][/database] (or postgresql://)",
                    ));
                }
                Config::parse(loc).map_err(|e| opt_err("location", e.to_string()))?
            }
            None => Config::new(),
        };
        let set = |config: &mut Config, key: &str, param: Param, value: &str| {
            config.set(param, value).map_err(|e| opt_err(key, e.to_string()))
        };
        if let Some(h) = m.get("host") {
            set(&mut config, "host", Param::Host, h)?;
            // A host given on its own replaces the location's host and any host address.
            config.unset(Param::HostAddr);
        }
        if let Some(p) = m.get("port") {
            let port: u16 = p
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| opt_err("port", format!("{p:?} is not a port number (1-65535)")))?;
            config.set_port(port).map_err(|e| opt_err("port", e.to_string()))?;
        }
        if let Some(u) = m.get("username") {
            set(&mut config, "username", Param::User, u)?;
        }
        if let Some(p) = m.get("password") {
            config.set_password(Password::new(p));
        }
        if let Some(mode) = m.get("ssl_mode") {
            let parsed = SslMode::parse(mode).ok_or_else(|| {
                let allowed: Vec<&str> = SslMode::ALL.iter().map(|m| m.as_str()).collect();
                opt_err("ssl_mode", format!("{mode:?} is not one of {}", allowed.join(", ")))
            })?;
            config.set_sslmode(parsed);
        }
        let mut inline_pem = Vec::new();
        for (key, param) in
            [("ssl_cert", Param::SslCert), ("ssl_key", Param::SslKey), ("ssl_root_cert", Param::SslRootCert)]
        {
            let data_key = format!("{key}_data");
            match (m.get(key), m.get(&data_key)) {
                (Some(_), Some(_)) => {
                    return Err(opt_err(&data_key, format!("{key} and {data_key} are mutually exclusive")));
                }
                (Some(path), None) => set(&mut config, key, param, path)?,
                (None, Some(pem)) => {
                    if !pem.contains("-----BEGIN ") {
                        return Err(opt_err(&data_key, "is not PEM text (no -----BEGIN line)"));
                    }
                    inline_pem.push((param, Password::new(pem)));
                }
                (None, None) => {}
            }
        }
        match m.get("connect_timeout") {
            Some(t) => {
                let secs =
                    t.strip_suffix('s').unwrap_or(t).parse::<u32>().ok().filter(|&s| s > 0).ok_or_else(
                        || opt_err("connect_timeout", format!("{t:?} is not a number of seconds (≥ 1)")),
                    )?;
                set(&mut config, "connect_timeout", Param::ConnectTimeout, &secs.to_string())?;
            }
            None if std::env::var_os("PGCONNECT_TIMEOUT").is_none()
                && !config.is_set(Param::ConnectTimeout) =>
            {
                set(
                    &mut config,
                    "connect_timeout",
                    Param::ConnectTimeout,
                    &DEFAULT_CONNECT_TIMEOUT.as_secs().to_string(),
                )?;
            }
            None => {}
        }
        // The database is data: taken out of the configuration and handed to each child on its
        // own, never spliced into a connection string.
        let database = match m.get("database") {
            Some(d) => Some(d.to_owned()),
            None => config.dbname().filter(|d| !d.is_empty()).map(str::to_owned),
        };
        config.unset(Param::DbName);
        let pg_bin_dir = m.get("pg_bin_dir").map(PathBuf::from);
        if let Some(dir) = &pg_bin_dir
            && !dir.is_absolute()
        {
            return Err(opt_err("pg_bin_dir", format!("{} is not an absolute directory", dir.display())));
        }
        // Everything the environment adds must resolve too: check now, not when a child runs.
        config
            .resolve()
            .map_err(|e| opt_err("location", format!("the connection settings do not resolve: {e}")))?;
        Ok(Self { config, database, inline_pem, pg_bin_dir, tool_search: ToolSearch::system() })
    }
}

impl BackupOptions {
    /// Parses and validates a backup's option map (keys: [`CONNECTION_KEYS`] and
    /// [`BACKUP_KEYS`]; an empty value counts as unset).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, LogicalError> {
        check_keys(map, BACKUP_KEYS)?;
        let m = Map(map);
        let connection = ConnectionOptions::from_map(map)?;
        let schema_only = m.bool("schema_only")?;
        let data_only = m.bool("data_only")?;
        if schema_only && data_only {
            return Err(opt_err("data_only", "schema_only and data_only are mutually exclusive"));
        }
        let exclude_databases: Vec<String> = m
            .get("exclude_databases")
            .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
            .unwrap_or_default();
        if let Some(db) = &connection.database
            && exclude_databases.contains(db)
        {
            return Err(opt_err(
                "exclude_databases",
                format!("excludes {db:?}, the one database this backup is for"),
            ));
        }
        Ok(Self { connection, compress: m.bool("compress")?, schema_only, data_only, exclude_databases })
    }
}

impl RestoreOptions {
    /// Parses and validates a restore's option map (keys: [`CONNECTION_KEYS`] and
    /// [`RESTORE_KEYS`]; an empty value counts as unset).
    pub fn from_map(map: &BTreeMap<String, String>) -> Result<Self, LogicalError> {
        check_keys(map, RESTORE_KEYS)?;
        let m = Map(map);
        let connection = ConnectionOptions::from_map(map)?;
        let schema_only = m.bool("schema_only")?;
        let data_only = m.bool("data_only")?;
        if schema_only && data_only {
            return Err(opt_err("data_only", "schema_only and data_only are mutually exclusive"));
        }
        let create_db = m.bool("create_db")?;
        if create_db && data_only {
            return Err(opt_err("create_db", "create_db and data_only are mutually exclusive"));
        }
        Ok(Self {
            connection,
            create_db,
            restore_globals: m.bool("restore_globals")?,
            no_owner: m.bool("no_owner")?,
            schema_only,
            data_only,
            exit_on_error: m.bool("exit_on_error")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn backup_err(pairs: &[(&str, &str)]) -> String {
        BackupOptions::from_map(&map(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn location_and_overrides() {
        let o = BackupOptions::from_map(&map(&[
            ("location", "postgres://bob:s3cret@db.example:6000/app?sslmode=require"),
            ("port", "7000"),
            ("compress", "true"),
        ]))
        .unwrap();
        assert_eq!(o.connection.database.as_deref(), Some("app"));
        assert_eq!(o.connection.config.user(), Some("bob"));
        assert_eq!(o.connection.config.ports(), Some(vec![Some(7000)]));
        assert_eq!(o.connection.config.sslmode(), Some(SslMode::Require));
        assert_eq!(o.connection.config.password().map(|p| p.expose()), Some("s3cret"));
        assert!(o.compress && !o.schema_only);
        assert!(!format!("{o:?}").contains("s3cret"));
        let o = BackupOptions::from_map(&map(&[
            ("location", "postgres://db/app"),
            ("database", "dbname=postgres port=1"),
            ("ssl_mode", ""),
        ]))
        .unwrap();
        assert_eq!(o.connection.database.as_deref(), Some("dbname=postgres port=1"));
        assert_eq!(o.connection.config.dbname(), None);
    }

    #[test]
    fn errors_name_the_option_and_what_is_allowed() {
        assert!(backup_err(&[("ssl_mode", "sometimes")]).contains(
            "ssl_mode: \"sometimes\" is not one of disable, allow, prefer, require, verify-ca, verify-full"
        ));
        assert!(backup_err(&[("compress", "yes")]).starts_with("option compress: \"yes\" is not a boolean"));
        assert!(backup_err(&[("schema_only", "1"), ("data_only", "true")]).contains("mutually exclusive"));
        assert!(backup_err(&[("port", "70000")]).contains("port"));
        assert!(backup_err(&[("location", "mysql://x")]).contains("option location: must be postgres://"));
        assert!(backup_err(&[("create_db", "true")]).contains("option create_db: unknown option; allowed:"));
        assert!(
            backup_err(&[("ssl_cert", "/a"), ("ssl_cert_data", "-----BEGIN x")])
                .contains("ssl_cert and ssl_cert_data are mutually exclusive")
        );
        assert!(backup_err(&[("ssl_key_data", "not pem")]).contains("ssl_key_data"));
        assert!(backup_err(&[("connect_timeout", "soon")]).contains("connect_timeout"));
        assert!(backup_err(&[("pg_bin_dir", "relative/bin")]).contains("pg_bin_dir"));
        assert!(
            backup_err(&[("database", "app"), ("exclude_databases", "x, app")]).contains("exclude_databases")
        );
        let e = backup_err(&[("location", "postgres://u:topsecret@h:notaport/db")]);
        assert!(e.contains("location") && !e.contains("topsecret"), "{e}");
        let e = RestoreOptions::from_map(&map(&[("create_db", "true"), ("data_only", "true")])).unwrap_err();
        assert!(e.to_string().contains("create_db"));
        assert!(RestoreOptions::from_map(&map(&[("compress", "true")])).is_err());
    }

    #[test]
    fn inline_pem_and_timeout() {
        let o = RestoreOptions::from_map(&map(&[
            ("ssl_root_cert_data", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            ("connect_timeout", "3"),
            ("exclude_databases", ""),
        ]));
        assert!(o.is_err(), "exclude_databases is a backup option");
        let o = RestoreOptions::from_map(&map(&[
            ("ssl_root_cert_data", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
            ("connect_timeout", "3"),
            ("restore_globals", "t"),
        ]))
        .unwrap();
        assert_eq!(o.connection.inline_pem.len(), 1);
        assert_eq!(o.connection.config.get(Param::ConnectTimeout), Some("3"));
        assert!(o.restore_globals);
        assert!(!format!("{o:?}").contains("AAAA"));
    }
}
