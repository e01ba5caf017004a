//! The serde model of `/manifest.json`, schema version 2.
//!
//! Field names, JSON types and "omitted when empty" rules are those of the Go plugin
//! (`manifest/manifest.go`, `manifest/metadata.go` of `PlakarKorp/integrations`), so a tool that
//! reads its manifests reads ours. Our additions are all optional for a reader and listed in
//! `docs/manifest.md` (marked "added"); none changes the meaning of a v2 field.
//!
//! Every type also implements `Deserialize` with defaults for what may be absent, so manifests
//! written by the Go plugin load as well.

use serde::{Deserialize, Serialize};

/// The schema version written in [`ClusterManifest::version`].
pub const SCHEMA_VERSION: u32 = 2;

/// `connector` of a logical backup (`postgres://`).
pub const CONNECTOR_LOGICAL: &str = "postgresql";
/// `connector` of a physical backup (`postgres+bin://`).
pub const CONNECTOR_PHYSICAL: &str = "postgresql+bin";
/// `dump_format` of a logical backup made with `pg_dump -Fc`.
pub const DUMP_FORMAT_CUSTOM: &str = "custom";
/// `dump_format` of a physical backup.
pub const DUMP_FORMAT_BASEBACKUP: &str = "basebackup";

/// The whole `/manifest.json` document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterManifest {
    /// Schema version, always [`SCHEMA_VERSION`].
    pub version: u32,
    /// RFC 3339 UTC time taken after every query ran, just before emission (also the record's
    /// mtime).
    pub created_at: String,
    /// [`CONNECTOR_LOGICAL`] or [`CONNECTOR_PHYSICAL`].
    pub connector: String,
    /// The host as configured.
    pub host: String,
    /// The port as configured, as a string (Go plugin compatibility).
    pub port: String,
    /// `current_setting('server_version')`.
    pub server_version: String,
    /// `current_setting('server_version_num')`, e.g. 160004.
    pub server_version_num: i64,
    /// Logical backups: `pg_dump --version` output, trimmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_dump_version: Option<String>,
    /// Written by the Go plugin's physical backups only; never by this project (see `client`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pg_basebackup_version: Option<String>,
    /// Added: physical backups: the native client's name and version, e.g. `pg_plakar/0.1.0`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `pg_control_system().system_identifier` as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_system_identifier: Option<String>,
    /// `pg_is_in_recovery()`; omitted (and listed in `collection_errors`) when it could not be
    /// read (the Go plugin wrote `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_recovery: Option<bool>,
    /// Logical single-database backups: the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// [`DUMP_FORMAT_CUSTOM`] or [`DUMP_FORMAT_BASEBACKUP`].
    pub dump_format: String,
    /// Logical backups: the dump options.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<DumpOptions>,
    /// Server settings; omitted when none could be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_config: Option<ClusterConfig>,
    /// Roles (`pg_roles`), by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Tablespaces, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tablespaces: Vec<Tablespace>,
    /// Databases, by name (single-database mode: only the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub databases: Vec<Database>,
    /// Added: RFC 3339 UTC time the collection started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_started_at: Option<String>,
    /// Added: RFC 3339 UTC time the last query finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection_finished_at: Option<String>,
    /// Added: what could not be collected and why; always written (empty when complete).
    #[serde(default)]
    pub collection_errors: Vec<CollectionError>,
}

/// The options of a logical backup (`options`); all three always present.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    /// `pg_dump --schema-only`.
    pub schema_only: bool,
    /// `pg_dump --data-only`.
    pub data_only: bool,
    /// Whether the dump is compressed.
    pub compress: bool,
}

/// Server settings (`cluster_config`), from `pg_settings` (runtime-config.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// `data_directory` (needs superuser or `pg_read_all_settings`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_directory: Option<String>,
    /// `TimeZone` (the Go plugin never filled it: it asked for `timezone`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// `max_connections`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<i64>,
    /// `wal_level`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_level: Option<String>,
    /// `server_encoding`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_encoding: Option<String>,
    /// `data_checksums = on`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_checksums: Option<bool>,
    /// `block_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<i64>,
    /// `wal_block_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal_block_size: Option<i64>,
    /// `shared_preload_libraries`; omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_preload_libraries: Option<String>,
    /// `lc_collate` setting (PG 12-15), else the connected database's `datcollate` (PG 16+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_collate: Option<String>,
    /// `lc_ctype` setting (PG 12-15), else the connected database's `datctype` (PG 16+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lc_ctype: Option<String>,
    /// `archive_mode`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_mode: Option<String>,
    /// Whether `archive_command` is set; the command itself is never stored (it may hold
    /// credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_command_set: Option<bool>,
    /// Added: `archive_library` (PG 15+); omitted when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_library: Option<String>,
}

/// A role (`pg_roles`, catalog-pg-roles.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// `rolname`.
    pub name: String,
    /// `rolsuper`.
    pub superuser: bool,
    /// `rolreplication`.
    pub replication: bool,
    /// `rolcanlogin`.
    pub can_login: bool,
    /// `rolcreatedb`.
    pub create_db: bool,
    /// `rolcreaterole`.
    pub create_role: bool,
    /// `rolinherit`.
    pub inherit: bool,
    /// `rolbypassrls`.
    pub bypass_rls: bool,
    /// `rolconnlimit` (−1: no limit).
    pub connection_limit: i64,
    /// `rolvaliduntil` as RFC 3339 UTC; `null` when unset or infinite.
    #[serde(default)]
    pub valid_until: Option<String>,
    /// Roles this role is a direct member of (`pg_auth_members`), sorted, each once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub member_of: Vec<String>,
}

/// A tablespace (`pg_tablespace`, catalog-pg-tablespace.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tablespace {
    /// `spcname`.
    pub name: String,
    /// Owner's role name.
    pub owner: String,
    /// `pg_tablespace_location(oid)`; empty for `pg_default` and `pg_global`.
    pub location: String,
    /// `spcoptions`, each `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A database (`pg_database`, catalog-pg-database.html) and, when it could be reached, its
/// contents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Database {
    /// `datname`.
    pub name: String,
    /// Owner's role name.
    pub owner: String,
    /// `pg_encoding_to_char(encoding)`.
    pub encoding: String,
    /// `datcollate`.
    pub collate: String,
    /// `datctype`.
    pub ctype: String,
    /// `datallowconn`.
    pub allow_conn: bool,
    /// `datistemplate`.
    pub is_template: bool,
    /// `datconnlimit` (−1: no limit).
    pub connection_limit: i64,
    /// Name of `dattablespace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_tablespace: Option<String>,
    /// Installed extensions, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extensions: Vec<Extension>,
    /// Schemas other than `pg_catalog`, `information_schema`, `pg_toast*` and `pg_temp*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schemas: Vec<Schema>,
    /// Tables, partitioned tables, views, materialized views, sequences and foreign tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relations: Vec<Relation>,
    /// Added: `datlocprovider` (PG 15+) as `libc`, `icu` or `builtin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale_provider: Option<String>,
    /// Added: the provider's locale: `daticulocale` (PG 15-16) or `datlocale` (PG 17+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// An installed extension (`pg_extension`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// `extname`.
    pub name: String,
    /// `extversion`.
    pub version: String,
    /// The schema it is installed in.
    pub schema: String,
}

/// A schema (`pg_namespace`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schema {
    /// `nspname`.
    pub name: String,
    /// Owner's role name.
    pub owner: String,
}

/// A relation (`pg_class`, catalog-pg-class.html) with its statistics
/// (`pg_stat_all_tables`, monitoring-stats.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relation {
    /// Schema name.
    pub schema: String,
    /// `relname`.
    pub name: String,
    /// Owner's role name.
    pub owner: String,
    /// `relpersistence`: `p` permanent, `u` unlogged, `t` temporary.
    pub persistence: String,
    /// `relkind`: `r` table, `p` partitioned table, `v` view, `m` materialized view,
    /// `S` sequence, `f` foreign table.
    pub kind: String,
    /// Its own tablespace, when not the database's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablespace: Option<String>,
    /// `reltuples`, at least 0.
    pub row_estimate: i64,
    /// `n_live_tup`, 0 when unknown.
    pub live_row_estimate: i64,
    /// Number of entries in `columns`.
    pub column_count: i64,
    /// Whether a primary key constraint exists.
    pub has_primary_key: bool,
    /// `relhastriggers`.
    pub has_triggers: bool,
    /// `relrowsecurity`.
    pub rls_enabled: bool,
    /// `relforcerowsecurity`.
    pub rls_forced: bool,
    /// `relispartition`.
    pub is_partition: bool,
    /// A partition's parent as `schema.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_parent: Option<String>,
    /// A partitioned table's strategy: `range`, `list` or `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_strategy: Option<String>,
    /// `reloptions`, each `name=value`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub storage_options: Vec<String>,
    /// Latest manual or automatic vacuum, RFC 3339 UTC to the second; `null` if never.
    #[serde(default)]
    pub last_vacuum: Option<String>,
    /// Latest manual or automatic analyze, RFC 3339 UTC to the second; `null` if never.
    #[serde(default)]
    pub last_analyze: Option<String>,
    /// Columns, by position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<Column>,
    /// Constraints of type `p`, `u`, `f`, `c`, `x`, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<Constraint>,
    /// Indexes, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub indexes: Vec<Index>,
    /// Added: `true` when `reltuples` is −1 (PG 14+: never vacuumed or analyzed), so the 0 in
    /// `row_estimate` means "unknown", not "empty".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub row_estimate_unknown: bool,
    /// Added: a partitioned table's key, `pg_get_partkeydef`, e.g. `RANGE (created)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_key: Option<String>,
    /// Added: a partition's bound, e.g. `FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_bound: Option<String>,
}

/// A column (`pg_attribute`, catalog-pg-attribute.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Column {
    /// `attnum`.
    pub position: i64,
    /// `attname`.
    pub name: String,
    /// `format_type(atttypid, atttypmod)`.
    #[serde(rename = "type")]
    pub type_name: String,
    /// `NOT attnotnull`.
    pub nullable: bool,
    /// The default expression (for a generated column: its generation expression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    /// Added: `attidentity`: `always` or `by default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// Added: `attgenerated`: `stored` or `virtual` (PG 18).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// A constraint (`pg_constraint`, catalog-pg-constraint.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    /// `conname`.
    pub name: String,
    /// `contype`: `p` primary key, `u` unique, `f` foreign key, `c` check, `x` exclusion.
    #[serde(rename = "type")]
    pub kind: String,
    /// Names of the constrained columns (`conkey`), in key order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Added: `pg_get_constraintdef(oid)`, e.g. `FOREIGN KEY (a) REFERENCES s.t(id)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
}

/// An index (`pg_index`, catalog-pg-index.html).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index's name.
    pub name: String,
    /// Access method (`btree`, `gist`, …).
    pub method: String,
    /// `pg_get_indexdef`, on one line.
    pub definition: String,
    /// `indisunique`.
    pub is_unique: bool,
    /// `indisprimary`.
    pub is_primary: bool,
    /// `indisvalid`.
    pub is_valid: bool,
    /// Has a predicate (`WHERE …`).
    pub is_partial: bool,
    /// The constraint (primary key, unique, exclusion) the index implements.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint_name: Option<String>,
    /// Added: has at least one expression column.
    #[serde(default)]
    pub is_expression: bool,
}

/// Added: one thing that could not be collected.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CollectionError {
    /// What is missing or incomplete: one of the section names in `docs/manifest.md`
    /// (`cluster_config`, `roles`, `relations`, `connect`, …).
    pub section: String,
    /// The database it concerns; `null` for cluster-wide facts.
    #[serde(default)]
    pub database: Option<String>,
    /// What went wrong, as the server or the client said it.
    pub error: String,
    /// The SQLSTATE of the server's error, when there was one (e.g. `42501`).
    #[serde(default)]
    pub sqlstate: Option<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A manifest as the Go plugin writes it for a physical backup: `pg_basebackup_version`, no
    /// added fields, `in_recovery: false`, `valid_until: null`.
    const GO_MANIFEST: &str = r#"{
      "version": 2, "created_at": "2026-04-08T10:00:00.123456789Z", "connector": "postgresql+bin",
      "host": "db", "port": "5432", "server_version": "17.2", "server_version_num": 170002,
      "pg_basebackup_version": "pg_basebackup (PostgreSQL) 17.2",
      "cluster_system_identifier": "7400000000000000000", "in_recovery": false,
      "dump_format": "basebackup",
      "cluster_config": {"max_connections": 100, "data_checksums": false, "archive_command_set": false},
      "roles": [{"name": "postgres", "superuser": true, "replication": true, "can_login": true,
                 "create_db": true, "create_role": true, "inherit": true, "bypass_rls": true,
                 "connection_limit": -1, "valid_until": null}],
      "databases": [{"name": "app", "owner": "postgres", "encoding": "UTF8", "collate": "C",
                     "ctype": "C", "allow_conn": true, "is_template": false, "connection_limit": -1,
                     "relations": [{"schema": "public", "name": "t", "owner": "postgres",
                       "persistence": "p", "kind": "r", "row_estimate": 0, "live_row_estimate": 0,
                       "column_count": 1, "has_primary_key": false, "has_triggers": false,
                       "rls_enabled": false, "rls_forced": false, "is_partition": false,
                       "last_vacuum": null, "last_analyze": null,
                       "columns": [{"position": 1, "name": "a", "type": "integer", "nullable": true}],
                       "indexes": [{"name": "i", "method": "btree", "definition": "CREATE INDEX i ON public.t USING btree (a)",
                                    "is_unique": false, "is_primary": false, "is_valid": true, "is_partial": false}]}]}]
    }"#;

    #[test]
    fn reads_go_manifests() {
        let m: ClusterManifest = serde_json::from_str(GO_MANIFEST).unwrap();
        assert_eq!(m.pg_basebackup_version.as_deref(), Some("pg_basebackup (PostgreSQL) 17.2"));
        assert_eq!(m.in_recovery, Some(false));
        assert!(m.collection_errors.is_empty());
        let rel = &m.databases[0].relations[0];
        assert_eq!(rel.columns[0].type_name, "integer");
        assert!(!rel.indexes[0].is_expression && !rel.row_estimate_unknown);
        // Everything Go wrote is written back unchanged (plus the always-present error list).
        let mut original: Value = serde_json::from_str(GO_MANIFEST).unwrap();
        original["collection_errors"] = json!([]);
        original["databases"][0]["relations"][0]["indexes"][0]["is_expression"] = json!(false);
        assert_eq!(serde_json::to_value(&m).unwrap(), original);
    }

    #[test]
    fn omits_what_go_omits_and_keeps_what_go_keeps() {
        let v = serde_json::to_value(Relation::default()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for always in ["row_estimate", "column_count", "rls_forced", "last_vacuum", "last_analyze"] {
            assert!(keys.contains(&always), "{always} missing from {keys:?}");
        }
        for omitted in
            ["tablespace", "partition_parent", "storage_options", "columns", "row_estimate_unknown"]
        {
            assert!(!keys.contains(&omitted), "{omitted} present in {keys:?}");
        }
        assert_eq!(v["last_vacuum"], Value::Null);
        let role = serde_json::to_value(Role::default()).unwrap();
        assert_eq!(role["valid_until"], Value::Null);
        assert!(role.get("member_of").is_none());
        let err = serde_json::to_value(CollectionError::default()).unwrap();
        assert_eq!((err["database"].clone(), err["sqlstate"].clone()), (Value::Null, Value::Null));
        let top = serde_json::to_value(ClusterManifest::default()).unwrap();
        for omitted in
            ["in_recovery", "pg_dump_version", "pg_basebackup_version", "client", "options", "roles"]
        {
            assert!(top.get(omitted).is_none(), "{omitted}");
        }
        assert_eq!(top["port"], json!(""), "port is a string");
    }
}
