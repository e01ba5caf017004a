//! Every catalog query of the collector, with its version switches in plain sight.
//!
//! All queries are text-mode simple queries; results are read by column position (the column
//! lists below are the contract with `collect.rs`). Arrays come back as JSON (`to_json`) so that
//! no separator character can be confused with data. Version facts (PostgreSQL docs, "System
//! Catalogs" of each major):
//!
//! | fact | majors |
//! |---|---|
//! | `lc_collate` / `lc_ctype` in `pg_settings` | 12-15 (removed in 16: read `pg_database.datcollate`/`datctype`) |
//! | `archive_library` setting | 15+ |
//! | `pg_database.datlocprovider` | 15+ (`c` libc, `i` icu, `b` builtin from 17) |
//! | `pg_database.daticulocale` | 15-16 (renamed `datlocale` in 17) |
//! | `pg_class.reltuples = -1` for "never analyzed" | 14+ (0 before) |
//! | several `pg_auth_members` rows per (roleid, member), one per grantor | 16+ |
//! | `pg_attribute.attgenerated = 'v'` (virtual generated columns) | 18+ |

/// `server_version_num` of the first major with each change.
pub(crate) mod since {
    /// PG 15: `archive_library`, `datlocprovider`, `daticulocale`.
    pub(crate) const LOCALE_PROVIDER: i64 = 150000;
    /// PG 16: `lc_collate`/`lc_ctype` no longer settings.
    pub(crate) const NO_LC_SETTINGS: i64 = 160000;
    /// PG 17: `daticulocale` renamed `datlocale`.
    pub(crate) const DATLOCALE: i64 = 170000;
}

/// Server version: `(server_version, server_version_num)`. Mandatory.
pub(crate) const SERVER_VERSION: &str =
    "SELECT current_setting('server_version'), current_setting('server_version_num')";

/// `(system_identifier)`.
pub(crate) const SYSTEM_IDENTIFIER: &str = "SELECT system_identifier::text FROM pg_control_system()";

/// `(in_recovery)` as `t`/`f`.
pub(crate) const IN_RECOVERY: &str = "SELECT pg_is_in_recovery()";

/// The settings `cluster_config` wants on this version, as named in `pg_settings` (note
/// `TimeZone`: the name is case-sensitive there).
pub(crate) fn cluster_settings(version_num: i64) -> Vec<&'static str> {
    let mut names = vec![
        "archive_command",
        "archive_mode",
        "block_size",
        "data_checksums",
        "data_directory",
        "max_connections",
        "server_encoding",
        "shared_preload_libraries",
        "TimeZone",
        "wal_block_size",
        "wal_level",
    ];
    if version_num < since::NO_LC_SETTINGS {
        names.extend(["lc_collate", "lc_ctype"]);
    }
    if version_num >= since::LOCALE_PROVIDER {
        names.push("archive_library");
    }
    names.sort_unstable();
    names
}

/// `(name, setting)` for [`cluster_settings`]. Settings the user may not read are absent from
/// `pg_settings` (not an error): see [`current_setting`].
pub(crate) fn cluster_config(version_num: i64) -> String {
    let list: Vec<String> = cluster_settings(version_num).iter().map(|n| format!("'{n}'")).collect();
    format!("SELECT name, setting FROM pg_settings WHERE name IN ({}) ORDER BY name", list.join(", "))
}

/// `(setting)` of one setting: used for a setting missing from `pg_settings`, to get the
/// server's own error (e.g. 42501 "must be superuser or have privileges of
/// pg_read_all_settings"). `name` is one of our constants, never user input.
pub(crate) fn current_setting(name: &str) -> String {
    format!("SELECT current_setting('{name}')")
}

/// PG 16+: `(datcollate, datctype)` of the connected database, standing in for the removed
/// `lc_collate`/`lc_ctype` settings.
pub(crate) const CURRENT_DB_LOCALE: &str =
    "SELECT datcollate, datctype FROM pg_database WHERE datname = current_database()";

/// Roles: `(rolname, rolsuper, rolreplication, rolcanlogin, rolcreatedb, rolcreaterole,
/// rolinherit, rolbypassrls, rolconnlimit, valid_until)`; `pg_roles` (readable by everyone,
/// unlike `pg_authid`); `valid_until` as `YYYY-MM-DDTHH:MI:SS.USZ` in UTC, NULL when unset or
/// ±infinity.
pub(crate) const ROLES: &str = "SELECT rolname, rolsuper, rolreplication, rolcanlogin, rolcreatedb, \
     rolcreaterole, rolinherit, rolbypassrls, rolconnlimit, \
     CASE WHEN isfinite(rolvaliduntil) \
          THEN to_char(rolvaliduntil AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') END \
     FROM pg_roles ORDER BY rolname";

/// Memberships: `(member, role)`, each pair once (PG 16+ has one row per grantor).
pub(crate) const MEMBERSHIPS: &str = "SELECT DISTINCT m.rolname, r.rolname FROM pg_auth_members am \
     JOIN pg_roles r ON r.oid = am.roleid JOIN pg_roles m ON m.oid = am.member ORDER BY 1, 2";

/// Tablespaces: `(spcname, owner, location, options json)`.
pub(crate) const TABLESPACES: &str = "SELECT spcname, pg_get_userbyid(spcowner), \
     pg_tablespace_location(oid), to_json(spcoptions) FROM pg_tablespace ORDER BY spcname";

/// Databases: `(datname, owner, encoding, datcollate, datctype, datallowconn, datistemplate,
/// datconnlimit, tablespace, locale provider, provider locale)`.
pub(crate) fn databases(version_num: i64) -> String {
    let locale = if version_num >= since::DATLOCALE {
        "d.datlocprovider::text, d.datlocale"
    } else if version_num >= since::LOCALE_PROVIDER {
        "d.datlocprovider::text, d.daticulocale"
    } else {
        "NULL::text, NULL::text"
    };
    format!(
        "SELECT d.datname, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, \
         d.datctype, d.datallowconn, d.datistemplate, d.datconnlimit, \
         COALESCE(ts.spcname, 'pg_default'), {locale} \
         FROM pg_database d LEFT JOIN pg_tablespace ts ON ts.oid = d.dattablespace ORDER BY d.datname"
    )
}

/// The schemas left out of per-database detail (system and temporary ones).
const USER_SCHEMAS: &str = "n.nspname NOT IN ('pg_catalog', 'information_schema') \
     AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'";

/// The relation kinds described.
const KINDS: &str = "c.relkind IN ('r', 'p', 'f', 'm', 'v', 'S')";

/// Extensions: `(extname, extversion, schema)`.
pub(crate) const EXTENSIONS: &str = "SELECT e.extname, e.extversion, n.nspname FROM pg_extension e \
     JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY e.extname";

/// Schemas: `(nspname, owner)`.
pub(crate) fn schemas() -> String {
    format!(
        "SELECT n.nspname, pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE {USER_SCHEMAS} \
         ORDER BY n.nspname"
    )
}

/// Relations, at most `limit` rows: `(oid, schema, relname, owner, relpersistence, relkind,
/// tablespace, reltuples::bigint, n_live_tup, has_pk, relhastriggers, relrowsecurity,
/// relforcerowsecurity, relispartition, parent schema, parent name, partstrat, reloptions json,
/// last vacuum epoch, last analyze epoch, partition key, partition bound)`.
pub(crate) fn relations(limit: usize) -> String {
    format!(
        "SELECT c.oid, n.nspname, c.relname, pg_get_userbyid(c.relowner), c.relpersistence, c.relkind, \
         ts.spcname, c.reltuples::bigint, COALESCE(s.n_live_tup, 0), \
         EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype = 'p'), \
         c.relhastriggers, c.relrowsecurity, c.relforcerowsecurity, c.relispartition, \
         pn.nspname, pc.relname, pt.partstrat, to_json(c.reloptions), \
         EXTRACT(EPOCH FROM GREATEST(s.last_vacuum, s.last_autovacuum))::bigint, \
         EXTRACT(EPOCH FROM GREATEST(s.last_analyze, s.last_autoanalyze))::bigint, \
         CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END, \
         CASE WHEN c.relispartition THEN pg_get_expr(c.relpartbound, c.oid) END \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid \
         LEFT JOIN pg_tablespace ts ON ts.oid = c.reltablespace \
         LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid \
         LEFT JOIN LATERAL (SELECT i.inhparent FROM pg_inherits i WHERE i.inhrelid = c.oid \
                            ORDER BY i.inhseqno LIMIT 1) ih ON c.relispartition \
         LEFT JOIN pg_class pc ON pc.oid = ih.inhparent \
         LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace \
         WHERE {KINDS} AND {USER_SCHEMAS} ORDER BY n.nspname, c.relname LIMIT {limit}"
    )
}

/// Columns, at most `limit` rows: `(attrelid, attnum, attname, type, nullable, default,
/// attidentity, attgenerated)`.
pub(crate) fn columns(limit: usize) -> String {
    format!(
        "SELECT a.attrelid, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull, \
         pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE a.attnum > 0 AND NOT a.attisdropped AND {KINDS} AND {USER_SCHEMAS} \
         ORDER BY a.attrelid, a.attnum LIMIT {limit}"
    )
}

/// Constraints, at most `limit` rows: `(conrelid, conname, contype, column names json,
/// definition)`.
pub(crate) fn constraints(limit: usize) -> String {
    format!(
        "SELECT k.conrelid, k.conname, k.contype, \
         to_json(ARRAY(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY u(attnum, ord) \
                       JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.attnum \
                       ORDER BY u.ord)), \
         pg_get_constraintdef(k.oid) \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE k.contype IN ('p', 'u', 'f', 'c', 'x') AND {KINDS} AND {USER_SCHEMAS} \
         ORDER BY k.conrelid, k.conname LIMIT {limit}"
    )
}

/// Indexes, at most `limit` rows: `(indrelid, index name, access method, definition,
/// indisunique, indisprimary, indisvalid, partial, expression, constraint name)`.
pub(crate) fn indexes(limit: usize) -> String {
    format!(
        "SELECT i.indrelid, ic.relname, am.amname, pg_get_indexdef(i.indexrelid), i.indisunique, \
         i.indisprimary, i.indisvalid, i.indpred IS NOT NULL, i.indexprs IS NOT NULL, k.conname \
         FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid \
         JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_am am ON am.oid = ic.relam \
         LEFT JOIN pg_constraint k ON k.conindid = i.indexrelid AND k.conrelid = i.indrelid \
                                  AND k.contype IN ('p', 'u', 'x') \
         WHERE {KINDS} AND {USER_SCHEMAS} ORDER BY i.indrelid, ic.relname LIMIT {limit}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_version() {
        let v12 = cluster_settings(120022);
        assert!(v12.contains(&"lc_collate") && !v12.contains(&"archive_library"));
        let v15 = cluster_settings(150018);
        assert!(v15.contains(&"lc_ctype") && v15.contains(&"archive_library"));
        let v16 = cluster_settings(160004);
        assert!(!v16.contains(&"lc_collate") && v16.contains(&"TimeZone"));
        assert!(cluster_config(160004).contains("'TimeZone'"));
    }

    #[test]
    fn database_locale_columns_follow_the_version() {
        assert!(databases(140000).contains("NULL::text, NULL::text"));
        assert!(databases(150000).contains("daticulocale"));
        assert!(databases(160000).contains("daticulocale"));
        assert!(databases(170000).contains("datlocale"));
        assert!(!databases(170000).contains("daticulocale"));
    }

    #[test]
    fn detail_queries_are_bounded() {
        for q in [relations(7), columns(7), constraints(7), indexes(7)] {
            assert!(q.ends_with("LIMIT 7"), "{q}");
        }
    }
}
