//! The collector against real PostgreSQL 12-18 with a fixture holding every kind of object.

mod common;

use std::time::Duration;

use cluster_manifest::{
    ClusterManifest, CollectOptions, CollectionError, Database, DumpOptions, Relation, collect,
};

/// Validates `m`, as written, against `docs/manifest.schema.json`.
fn assert_valid(m: &ClusterManifest) -> serde_json::Value {
    let schema_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/manifest.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(schema_path).expect("reading the schema")).unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("a valid draft 2020-12 schema");
    let doc: serde_json::Value =
        serde_json::from_slice(&cluster_manifest::manifest_json(m).unwrap()).unwrap();
    let problems: Vec<String> =
        validator.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(problems.is_empty(), "manifest does not match its schema:\n{}", problems.join("\n"));
    doc
}

fn db<'a>(m: &'a ClusterManifest, name: &str) -> &'a Database {
    m.databases.iter().find(|d| d.name == name).unwrap_or_else(|| panic!("database {name} missing"))
}

fn rel<'a>(d: &'a Database, schema: &str, name: &str) -> &'a Relation {
    d.relations
        .iter()
        .find(|r| r.schema == schema && r.name == name)
        .unwrap_or_else(|| panic!("relation {schema}.{name} missing from {}", d.name))
}

fn errors_for<'a>(m: &'a ClusterManifest, section: &str) -> Vec<&'a CollectionError> {
    m.collection_errors.iter().filter(|e| e.section == section).collect()
}

pg_testkit::per_major!(async fn superuser_manifest(major) {
    let (cluster, hstore) = common::fixture(major);
    let connector = common::connector(&cluster, "postgres");
    let options = CollectOptions::physical("127.0.0.1", cluster.port().to_string());
    let m = collect(&connector, &options).await.expect("collect");

    assert_eq!(m.collection_errors, vec![], "a superuser collects everything");
    // Top level.
    assert_eq!((m.version, m.connector.as_str(), m.dump_format.as_str()), (2, "postgresql+bin", "basebackup"));
    assert_eq!(m.port, cluster.port().to_string());
    assert_eq!(m.server_version_num / 10000, i64::from(major));
    assert!(m.server_version.starts_with(&major.to_string()), "{}", m.server_version);
    assert_eq!(m.client.as_deref(), Some(cluster_manifest::client_name().as_str()));
    assert_eq!((m.pg_dump_version.as_deref(), m.options.as_ref()), (None, None));
    let sysid = m.cluster_system_identifier.as_deref().expect("system identifier");
    assert!(sysid.len() >= 15 && sysid.bytes().all(|b| b.is_ascii_digit()), "{sysid}");
    assert_eq!(m.in_recovery, Some(false));
    assert!(m.collection_started_at.is_some() && m.collection_finished_at.is_some());

    // cluster_config: timezone (M1) and lc_* on every version (M2).
    let cfg = m.cluster_config.as_ref().expect("cluster_config");
    assert_eq!(cfg.data_directory.as_deref(), Some(cluster.data_dir().to_str().unwrap()));
    assert!(cfg.timezone.as_deref().is_some_and(|t| !t.is_empty()), "{cfg:?}");
    assert_eq!(cfg.lc_collate.as_deref(), Some("C.UTF-8"));
    assert_eq!(cfg.lc_ctype.as_deref(), Some("C.UTF-8"));
    assert_eq!(cfg.wal_level.as_deref(), Some("replica"));
    assert_eq!(cfg.server_encoding.as_deref(), Some("UTF8"));
    assert_eq!((cfg.block_size, cfg.wal_block_size), (Some(8192), Some(8192)));
    assert!(cfg.max_connections.is_some_and(|n| n > 0));
    assert_eq!(cfg.data_checksums, Some(false));
    assert_eq!(cfg.archive_command_set, Some(false));
    assert_eq!(cfg.archive_mode.as_deref(), Some("off"));
    assert_eq!(cfg.shared_preload_libraries, None);

    // Roles.
    let role = |name: &str| m.roles.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("role {name}"));
    assert!(role("cat_admin").superuser && role("cat_admin").can_login);
    assert!(role("cat_repl").replication && !role("cat_repl").superuser);
    assert_eq!(role("cat_repl").connection_limit, 3);
    assert_eq!(role("cat_readers").connection_limit, -1);
    let app = role("cat_app");
    assert!(app.can_login && app.create_db && app.inherit && !app.create_role);
    assert_eq!(app.valid_until.as_deref(), Some("2031-02-03T04:05:06.5Z"));
    // M3: one entry per role even where PG 16+ stores one row per grantor.
    assert_eq!(app.member_of, vec!["cat_readers", "cat_staff"]);
    if major >= 16 {
        let rows = cluster
            .sql("SELECT count(*) FROM pg_auth_members WHERE roleid = 'cat_readers'::regrole AND member = 'cat_app'::regrole")
            .unwrap();
        assert_eq!(rows, "2", "the fixture must hold a duplicate membership on 16+");
    }
    assert_eq!(role("cat_staff").member_of, vec!["cat_readers"]);
    assert_eq!(role("cat_forever").valid_until, None);
    let rls = role("cat_rls");
    assert!(rls.bypass_rls && !rls.inherit && rls.create_role && !rls.can_login);
    let mut names: Vec<&str> = m.roles.iter().map(|r| r.name.as_str()).collect();
    let sorted = { let mut s = names.clone(); s.sort_unstable(); s };
    assert_eq!(names, sorted);
    names.dedup();
    assert_eq!(names.len(), m.roles.len());

    // Tablespaces.
    let ts: Vec<(&str, &str)> = m.tablespaces.iter().map(|t| (t.name.as_str(), t.location.as_str())).collect();
    assert_eq!(ts[0], ("cat_ts", ts[0].1));
    assert!(ts[0].1.ends_with("/tblspc/cat_ts"), "{ts:?}");
    assert_eq!(&ts[1..], &[("pg_default", ""), ("pg_global", "")]);
    assert_eq!(m.tablespaces[0].options, vec!["seq_page_cost=2"]);
    assert_eq!(m.tablespaces[0].owner, "postgres");

    // Databases.
    let latin1 = db(&m, "cat_latin1");
    assert_eq!((latin1.encoding.as_str(), latin1.collate.as_str(), latin1.ctype.as_str()), ("LATIN1", "C", "C"));
    assert_eq!(latin1.connection_limit, 7);
    assert_eq!(latin1.default_tablespace.as_deref(), Some("pg_default"));
    assert_eq!(db(&m, "cat_ts_db").default_tablespace.as_deref(), Some("cat_ts"));
    assert_eq!(db(&m, "cat_ts_db").owner, "cat_app");
    assert!(db(&m, "cat_tmpl").is_template && db(&m, "cat_tmpl").relations.is_empty());
    assert!(!db(&m, "cat_noconn").allow_conn && db(&m, "cat_noconn").extensions.is_empty());
    assert!(db(&m, "template0").extensions.is_empty());
    let main = db(&m, "cat_main");
    assert_eq!((main.encoding.as_str(), main.collate.as_str()), ("UTF8", "C.UTF-8"));
    if major >= 15 {
        assert_eq!(main.locale_provider.as_deref(), Some("libc"));
    } else {
        assert_eq!(main.locale_provider, None);
    }
    // Every connectable database was detailed (plpgsql is in each one).
    for d in m.databases.iter().filter(|d| d.allow_conn && !d.is_template) {
        assert!(d.extensions.iter().any(|e| e.name == "plpgsql" && e.schema == "pg_catalog"), "{}", d.name);
    }
    let ext: Vec<&str> = main.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(ext, if hstore { vec!["hstore", "plpgsql"] } else { vec!["plpgsql"] });
    if hstore {
        assert_eq!(main.extensions[0].schema, "app");
        assert!(!main.extensions[0].version.is_empty());
    }
    let schemas: Vec<(&str, &str)> = main.schemas.iter().map(|s| (s.name.as_str(), s.owner.as_str())).collect();
    assert_eq!(schemas, [("app", "cat_app"), ("odd", "postgres"), ("odd.schema", "postgres"), ("public", schemas[3].1)]);

    // Relations: kinds, persistence, partitioning.
    let kinds: Vec<(&str, &str, &str)> =
        main.relations.iter().map(|r| (r.name.as_str(), r.kind.as_str(), r.persistence.as_str())).collect();
    for expected in [
        ("customers", "r", "p"),
        ("scratch", "r", "u"),
        ("events", "p", "p"),
        ("events_2024", "r", "p"),
        ("big_orders", "v", "p"),
        ("order_totals", "m", "p"),
        ("invoice_seq", "S", "p"),
        ("remote", "f", "p"),
        ("customers_id_seq", "S", "p"),
    ] {
        assert!(kinds.contains(&expected), "{expected:?} not in {kinds:?}");
    }
    for (parent, strategy, part) in [("events", "range", "events_2024"), ("regions", "list", "regions_eu"), ("shards", "hash", "shards_1")] {
        let p = rel(main, "app", parent);
        assert_eq!(p.partition_strategy.as_deref(), Some(strategy));
        assert!(p.partition_key.as_deref().is_some_and(|k| k.starts_with(&strategy.to_uppercase())), "{p:?}");
        let c = rel(main, "app", part);
        assert!(c.is_partition && c.partition_strategy.is_none());
        assert_eq!(c.partition_parent.as_deref(), Some(format!("app.{parent}").as_str()));
        assert!(c.partition_bound.as_deref().is_some_and(|b| b.starts_with("FOR VALUES")), "{c:?}");
    }
    assert_eq!(rel(main, "app", "regions_eu").partition_bound.as_deref(), Some("FOR VALUES IN ('de', 'fr')"));

    let customers = rel(main, "app", "customers");
    assert_eq!(customers.owner, "postgres");
    assert!(customers.has_primary_key && customers.has_triggers);
    assert_eq!(customers.storage_options, vec!["fillfactor=70", "autovacuum_enabled=false"]);
    assert_eq!(customers.row_estimate, 50);
    assert!(!customers.row_estimate_unknown);
    assert!(customers.last_analyze.as_deref().is_some_and(|t| t.ends_with('Z') && t.len() == 20), "{customers:?}");
    assert_eq!(customers.last_vacuum, None);
    assert!(rel(main, "app", "orders").last_vacuum.is_some());
    let scratch = rel(main, "app", "scratch");
    assert_eq!((scratch.row_estimate, scratch.row_estimate_unknown), (0, major >= 14));
    assert_eq!((scratch.last_vacuum.as_deref(), scratch.last_analyze.as_deref()), (None, None));
    let secrets = rel(main, "app", "secrets");
    assert!(secrets.rls_enabled && secrets.rls_forced && !secrets.has_primary_key);
    assert!(!customers.rls_enabled && !customers.rls_forced);
    assert_eq!(rel(main, "app", "placed").tablespace.as_deref(), Some("cat_ts"));
    assert_eq!(customers.tablespace, None);

    // Columns: position, type, nullability, defaults, identity.
    assert_eq!(customers.column_count, 4);
    let cols: Vec<(i64, &str, &str, bool)> =
        customers.columns.iter().map(|c| (c.position, c.name.as_str(), c.type_name.as_str(), c.nullable)).collect();
    assert_eq!(cols, [(1, "id", "bigint", false), (2, "email", "text", false), (3, "name", "text", true), (4, "created", "timestamp with time zone", false)]);
    assert_eq!(customers.columns[0].identity.as_deref(), Some("always"));
    assert_eq!(customers.columns[2].default.as_deref(), Some("'anon'::text"));
    assert_eq!(customers.columns[3].default.as_deref(), Some("now()"));
    let orders = rel(main, "app", "orders");
    assert_eq!(orders.columns[0].default.as_deref(), Some("nextval('app.orders_id_seq'::regclass)"));
    assert_eq!(orders.columns[2].type_name, "numeric(10,2)");
    // M7: "odd.schema"."x" and odd."schema.x" share a dotted name but not their columns.
    assert_eq!(rel(main, "odd.schema", "x").column_count, 1);
    assert_eq!(rel(main, "odd", "schema.x").column_count, 2);

    // Constraints p/u/f/c/x.
    let cons = |r: &Relation| -> Vec<(String, String, Vec<String>)> {
        r.constraints.iter().map(|c| (c.name.clone(), c.kind.clone(), c.columns.clone())).collect()
    };
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    assert_eq!(cons(customers), vec![
        ("customers_email_key".into(), "u".into(), s(&["email"])),
        ("customers_pkey".into(), "p".into(), s(&["id"])),
        ("email_has_at".into(), "c".into(), s(&["email"])),
    ]);
    assert!(cons(orders).contains(&("orders_customer_id_fkey".into(), "f".into(), s(&["customer_id"]))));
    let fk = orders.constraints.iter().find(|c| c.kind == "f").unwrap();
    assert_eq!(fk.definition.as_deref(), Some("FOREIGN KEY (customer_id) REFERENCES app.customers(id)"));
    assert_eq!(cons(rel(main, "app", "bookings")), vec![("no_overlap".into(), "x".into(), s(&["during"]))]);

    // Indexes: unique, primary, partial, expression, exclusion.
    let idx = |r: &Relation, n: &str| r.indexes.iter().find(|i| i.name == n).cloned().unwrap_or_else(|| panic!("index {n}"));
    let pk = idx(customers, "customers_pkey");
    assert!(pk.is_primary && pk.is_unique && pk.is_valid && !pk.is_partial && !pk.is_expression);
    assert_eq!((pk.method.as_str(), pk.constraint_name.as_deref()), ("btree", Some("customers_pkey")));
    let expr = idx(customers, "customers_lower_email");
    assert!(expr.is_expression && !expr.is_unique && expr.constraint_name.is_none());
    assert_eq!(expr.definition, "CREATE INDEX customers_lower_email ON app.customers USING btree (lower(email))");
    let partial = idx(orders, "orders_big");
    assert!(partial.is_partial && !partial.is_expression);
    let excl = idx(rel(main, "app", "bookings"), "no_overlap");
    assert_eq!((excl.method.as_str(), excl.constraint_name.as_deref()), ("gist", Some("no_overlap")));
    // An FK's conindid points at the referenced table's index: it must not name that index.
    assert_eq!(idx(orders, "orders_pkey").constraint_name.as_deref(), Some("orders_pkey"));

    // A view has columns but no storage; a sequence has its fixed columns.
    assert_eq!(rel(main, "app", "big_orders").column_count, 4);
    assert!(rel(main, "app", "invoice_seq").indexes.is_empty());

    // The JSON itself: Go names, no archive command, no password.
    let json = String::from_utf8(cluster_manifest::manifest_json(&m).unwrap().to_vec()).unwrap();
    for key in ["\"cluster_config\"", "\"timezone\"", "\"member_of\"", "\"row_estimate\"", "\"type\": \"bigint\"", "\"collection_errors\": []"] {
        assert!(json.contains(key), "{key} missing");
    }
    assert!(!json.contains("archive_command\""));

    let mut m = m;
    m.created_at = cluster_manifest::rfc3339_utc(std::time::SystemTime::now());
    assert_valid(&m);
    if major == 16 {
        // Volatile values are redacted; a null stays null so the snapshot still shows it.
        let time = || insta::dynamic_redaction(|v, _| if v.is_nil() { v } else { "[time]".into() });
        insta::assert_json_snapshot!("manifest_pg16", m, {
            ".created_at" => "[time]",
            ".collection_started_at" => "[time]",
            ".collection_finished_at" => "[time]",
            ".port" => "[port]",
            ".server_version" => "[version]",
            ".server_version_num" => "[version]",
            ".client" => "[client]",
            ".cluster_system_identifier" => "[sysid]",
            ".cluster_config.data_directory" => "[path]",
            ".cluster_config.timezone" => "[tz]",
            ".cluster_config.max_connections" => "[n]",
            ".tablespaces[].location" => insta::dynamic_redaction(
                |v, _| if v.as_str() == Some("") { v } else { "[path]".into() }
            ),
            ".databases[].relations[].last_vacuum" => time(),
            ".databases[].relations[].last_analyze" => time(),
            ".databases[].relations[].live_row_estimate" => "[n]",
        });
    }
});

pg_testkit::per_major!(async fn limited_user_manifest(major) {
    let (cluster, _) = common::fixture(major);
    cluster.sql("GRANT CONNECT ON DATABASE cat_private TO cat_admin").unwrap();
    let connector = common::connector(&cluster, "cat_app");
    let options = CollectOptions::logical(
        "127.0.0.1",
        cluster.port().to_string(),
        None,
        Some("pg_dump (PostgreSQL) 18.0".into()),
        DumpOptions { schema_only: true, data_only: false, compress: false },
    );
    let m = collect(&connector, &options).await.expect("a limited user still gets a manifest");
    assert_eq!((m.connector.as_str(), m.dump_format.as_str()), ("postgresql", "custom"));
    assert_eq!(m.pg_dump_version.as_deref(), Some("pg_dump (PostgreSQL) 18.0"));
    assert_eq!(m.options, Some(DumpOptions { schema_only: true, data_only: false, compress: false }));
    assert_eq!(m.client, None);

    // Settings that need pg_read_all_settings are named, with the server's SQLSTATE.
    let cfg = m.cluster_config.as_ref().expect("the readable settings are there");
    assert_eq!(cfg.data_directory, None);
    assert!(cfg.timezone.is_some() && cfg.block_size == Some(8192));
    let dd = errors_for(&m, "cluster_config.data_directory");
    assert_eq!(dd.len(), 1, "{:#?}", m.collection_errors);
    assert_eq!(dd[0].sqlstate.as_deref(), Some("42501"));
    assert!(dd[0].error.contains("data_directory"), "{}", dd[0].error);
    assert_eq!(dd[0].database, None);
    let spl = errors_for(&m, "cluster_config.shared_preload_libraries");
    assert_eq!(spl.len(), 1, "{:#?}", m.collection_errors);
    assert_eq!(spl[0].sqlstate.as_deref(), Some("42501"));
    // archive_command is readable by everyone, yet only whether it is set is recorded.
    assert_eq!(cfg.archive_command_set, Some(false));

    // Roles come from pg_roles, readable by everyone.
    assert!(m.roles.iter().any(|r| r.name == "cat_admin" && r.superuser));
    assert!(errors_for(&m, "roles").is_empty());

    // The database it may not connect to is named; the others are detailed.
    let private = errors_for(&m, "connect");
    assert_eq!(private.len(), 1, "{:#?}", m.collection_errors);
    assert_eq!(private[0].database.as_deref(), Some("cat_private"));
    // The whole connection error: which server, which step, the server's message.
    let port = cluster.port();
    assert!(
        private[0].error.starts_with(&format!("connection to server at host \"127.0.0.1\", port {port} failed during authentication: FATAL: permission denied for database \"cat_private\" (SQLSTATE 42501)")),
        "{}",
        private[0].error
    );
    assert_eq!(private[0].sqlstate.as_deref(), Some("42501"));
    assert!(db(&m, "cat_private").relations.is_empty());
    let main = db(&m, "cat_main");
    assert!(rel(main, "app", "customers").has_primary_key);
    assert_eq!(rel(main, "app", "secrets").columns.len(), 2);

    // Nothing else is missing (the system identifier and recovery state are public), and every
    // entry says what and where.
    assert!(m.cluster_system_identifier.is_some() && m.in_recovery == Some(false));
    for e in &m.collection_errors {
        assert!(!e.section.is_empty() && !e.error.is_empty(), "{e:?}");
        assert!(
            ["cluster_config.data_directory", "cluster_config.shared_preload_libraries", "connect"]
                .contains(&e.section.as_str()),
            "unexpected: {e:?}"
        );
    }
    let mut m = m;
    m.created_at = cluster_manifest::rfc3339_utc(std::time::SystemTime::now());
    assert_valid(&m);
});

pg_testkit::per_major!(async fn deadline_and_missing_postgres_database(major) {
    let cluster = pg_testkit::TestCluster::start(major).unwrap();
    cluster.sql("CREATE DATABASE slow_a; CREATE DATABASE slow_b; CREATE DATABASE fine").unwrap();
    cluster.sql_db("template1", "DROP DATABASE postgres").unwrap();
    // A real stall: renaming a database takes an exclusive lock on it until the transaction
    // ends, and a new session waits for that lock in its startup (postinit.c, InitPostgres),
    // after authentication, before it is ready for queries.
    let mut holder = pg_conn::Client::connect(&common::config(&cluster, "postgres").with_dbname("template1").unwrap())
        .await
        .expect("the lock holder's session");
    holder
        .simple_query("BEGIN; ALTER DATABASE slow_a RENAME TO slow_a_held; ALTER DATABASE slow_b RENAME TO slow_b_held")
        .await
        .expect("holding the locks");
    let connector = common::connector(&cluster, "postgres");
    let mut options = CollectOptions::physical("127.0.0.1", cluster.port().to_string());
    options.deadline = Duration::from_secs(5);
    let started = std::time::Instant::now();
    let m = collect(&connector, &options).await.expect("a manifest despite the stalls");
    assert!(started.elapsed() < Duration::from_secs(30), "the deadline bounds the collection");
    holder.simple_query("ROLLBACK").await.expect("releasing the locks");
    holder.close().await.expect("closing the lock holder");

    // Without a `postgres` database the collector used template1.
    assert!(m.roles.iter().any(|r| r.name == "postgres"));
    assert!(db(&m, "fine").extensions.iter().any(|e| e.name == "plpgsql"), "{:#?}", m.databases);
    // Both stalled databases are named, as not collected because of the deadline.
    let late: Vec<(&str, &str)> = m
        .collection_errors
        .iter()
        .map(|e| (e.section.as_str(), e.database.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(late, [("connect", "slow_a"), ("connect", "slow_b")], "{:#?}", m.collection_errors);
    assert!(m.collection_errors.iter().all(|e| e.error.contains("deadline") && e.sqlstate.is_none()));
    assert!(db(&m, "slow_a").extensions.is_empty());
});

pg_testkit::per_major!(async fn single_database_mode(major) {
    let cluster = pg_testkit::TestCluster::start(major).unwrap();
    cluster.sql("CREATE DATABASE one; CREATE DATABASE other").unwrap();
    cluster.sql_db("one", "CREATE TABLE t (a int PRIMARY KEY); CREATE TABLE u (b int)").unwrap();
    let connector = common::connector(&cluster, "postgres");
    let options = CollectOptions::logical(
        "127.0.0.1",
        cluster.port().to_string(),
        Some("one".into()),
        None,
        DumpOptions::default(),
    );
    let m = collect(&connector, &options).await.unwrap();
    assert_eq!(m.database.as_deref(), Some("one"));
    assert_eq!(m.pg_dump_version, None);
    let names: Vec<&str> = m.databases.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["one"]);
    assert!(rel(&m.databases[0], "public", "t").has_primary_key);
    assert_eq!(m.databases[0].relations.len(), 2);
    assert_eq!(m.collection_errors, vec![]);

    // Over the row limit, lists are cut and the manifest says so.
    let mut options = options;
    options.row_limit = 1;
    let m = collect(&connector, &options).await.unwrap();
    assert_eq!(m.databases[0].relations.len(), 1);
    let cut: Vec<(&str, Option<&str>)> =
        m.collection_errors.iter().map(|e| (e.section.as_str(), e.database.as_deref())).collect();
    assert_eq!(cut, [("relations", Some("one")), ("columns", Some("one"))]);
    assert!(m.collection_errors.iter().all(|e| e.error.starts_with("incomplete: more than 1 rows")));

    // The first connection is mandatory: a refusal fails the collection with the server's
    // SQLSTATE (from pg-conn), and a missing target database is not replaced by another.
    let refused = |err: cluster_manifest::CollectError| match err {
        cluster_manifest::CollectError::Connect { database, error } => (database, error),
        other => panic!("expected a connect error, got {other}"),
    };
    let (database, source) = refused(collect(&common::connector(&cluster, "nobody"), &options).await.unwrap_err());
    assert_eq!((database.as_str(), source.sqlstate.as_deref()), ("one", Some("28000")));
    assert!(source.message.contains("\"nobody\""), "{source}");
    options.database = Some("absent".into());
    let (database, source) = refused(collect(&connector, &options).await.unwrap_err());
    assert_eq!((database.as_str(), source.sqlstate.as_deref()), ("absent", Some("3D000")));
    assert!(source.message.contains("\"absent\""), "{source}");
});
