//! Logical backup and restore against real servers.

mod common;

use common::*;
use pg_logical::{DumpOutcome, FileOutcome, LogicalError, Restorer};
use pg_testkit::{TestCluster, User};
use record_sink::Source;

/// Roles that own objects and have passwords, a foreign key, a sequence, a view, non-ASCII text.
const SHOP_ROLES: &str = "
CREATE ROLE alice LOGIN PASSWORD 'alice-secret';
CREATE ROLE bob NOLOGIN;
CREATE ROLE \"rôle spécial\" LOGIN PASSWORD 'x''y';
";

fn shop_sql() -> &'static str {
    "
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE order_no START 1000;
CREATE TABLE orders (
    no int PRIMARY KEY DEFAULT nextval('order_no'),
    customer int NOT NULL REFERENCES customers(id),
    note text
);
INSERT INTO customers VALUES (1, 'Zoë Ångström'), (2, '東京 Ünïcödé'), (3, 'plain');
INSERT INTO orders (customer, note) SELECT (g % 3) + 1, 'note ' || g || ' ✓' FROM generate_series(1, 500) g;
CREATE VIEW big_customers AS SELECT c.name, count(*) AS n FROM customers c JOIN orders o ON o.customer = c.id GROUP BY c.name;
ALTER TABLE customers OWNER TO alice;
ALTER TABLE orders OWNER TO alice;
ALTER SEQUENCE order_no OWNER TO alice;
ALTER VIEW big_customers OWNER TO \"rôle spécial\";
GRANT SELECT ON customers TO bob;
GRANT SELECT ON customers, orders TO \"rôle spécial\";
"
}

fn make_shop(cluster: &TestCluster, db: &str) {
    cluster.sql(SHOP_ROLES).unwrap();
    cluster.sql(&format!("CREATE DATABASE {} OWNER alice", quote_ident(db))).unwrap();
    cluster.sql_db(db, shop_sql()).unwrap();
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

fn rows(cluster: &TestCluster, db: &str) -> String {
    cluster
        .sql_db(
            db,
            "SELECT string_agg(format('%s|%s', id, name), ',' ORDER BY id) FROM customers;
             SELECT count(*), sum(no), string_agg(note, ',' ORDER BY no) FROM orders;
             SELECT last_value, is_called FROM order_no;
             SELECT * FROM big_customers ORDER BY name;",
        )
        .unwrap()
}

fn password_hashes(cluster: &TestCluster) -> String {
    cluster
        .sql("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('alice', 'bob', 'rôle spécial') ORDER BY 1")
        .unwrap()
}

#[test]
fn round_trip_pg15_create_db_and_globals() {
    let src = cluster(15, &[]);
    make_shop(&src, "shop");
    let rt = rt();
    let sink = rt
        .block_on(backup(&backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("shop")))])))
        .unwrap();
    let names: Vec<&str> = sink.files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(names, ["/globals.sql", "/shop.dump"]);
    for f in &sink.files {
        assert!(f.ended && f.size.is_none(), "{f:?}");
        assert!(f.mtime.elapsed().unwrap().as_secs() < 600);
    }
    assert!(sink.file("/shop.dump").body.starts_with(b"PGDMP"));
    let globals = String::from_utf8(sink.file("/globals.sql").body.clone()).unwrap();
    assert!(globals.contains("CREATE ROLE alice;") && globals.contains("SCRAM-SHA-256$"), "{globals}");

    let dst = cluster(15, &[]);
    let mut restorer = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &location(&dst, ADMIN, ADMIN_PW, None)),
            ("create_db", "true"),
            ("restore_globals", "true"),
        ])))
        .unwrap();
    let outcomes = rt.block_on(restore_walk(&mut restorer, &files_of(&sink)));
    for (path, o) in &outcomes {
        assert!(matches!(o, Ok(FileOutcome::Restored { warnings }) if warnings.is_empty()), "{path}: {o:?}");
    }
    drop(restorer);
    assert_eq!(schema_of(&dst, "shop"), schema_of(&src, "shop"));
    assert_eq!(rows(&dst, "shop"), rows(&src, "shop"));
    assert_eq!(password_hashes(&dst), password_hashes(&src));
    assert_eq!(
        dst.sql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'shop'").unwrap(),
        "alice"
    );
}

#[test]
fn no_owner_schema_only_and_data_only() {
    let src = cluster(15, &[]);
    make_shop(&src, "shop");
    let rt = rt();
    let loc = location(&src, ADMIN, ADMIN_PW, Some("shop"));
    let full = rt.block_on(backup(&backup_options(&[("location", &loc)]))).unwrap();

    // no_owner into a cluster without those roles.
    let dst = cluster(15, &[]);
    let dst_loc = location(&dst, ADMIN, ADMIN_PW, None);
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &dst_loc),
            ("create_db", "true"),
            ("no_owner", "true"),
        ])))
        .unwrap();
    let dump = vec![("/shop.dump".to_owned(), full.file("/shop.dump").body.clone())];
    let out = rt.block_on(restore_walk(&mut r, &dump));
    // Without the roles, the GRANT to bob fails: pg_restore goes on, and says so.
    let err = out[0].1.as_ref().unwrap_err();
    assert!(err.contains("bob") && err.contains("does not exist"), "{err}");
    assert_eq!(rows(&dst, "shop"), rows(&src, "shop"));
    assert_eq!(
        dst.sql_db("shop", "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'").unwrap(),
        ADMIN
    );

    // schema_only backup: the tables, no rows.
    let schema =
        rt.block_on(backup(&backup_options(&[("location", &loc), ("schema_only", "true")]))).unwrap();
    let dst2 = cluster(15, &[]);
    let dst2_loc = location(&dst2, ADMIN, ADMIN_PW, None);
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &dst2_loc),
            ("create_db", "true"),
            ("restore_globals", "true"),
        ])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &files_of(&schema)));
    assert!(out.iter().all(|(_, o)| o.is_ok()), "{out:?}");
    assert_eq!(schema_of(&dst2, "shop"), schema_of(&src, "shop"));
    assert_eq!(dst2.sql_db("shop", "SELECT count(*) FROM orders").unwrap(), "0");

    // schema_only restore of the full backup: pg_restore needs no data block and may stop
    // reading early; that is a success.
    let dst3 = cluster(15, &[]);
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &location(&dst3, ADMIN, ADMIN_PW, None)),
            ("create_db", "true"),
            ("no_owner", "true"),
            ("schema_only", "true"),
        ])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &dump));
    assert!(
        out[0].1.as_ref().is_err_and(|e| e.contains("bob")),
        "only the grant to the missing role fails: {out:?}"
    );
    assert_eq!(
        dst3.sql_db("shop", "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").unwrap(),
        "2"
    );
    assert_eq!(dst3.sql_db("shop", "SELECT count(*) FROM orders").unwrap(), "0");

    // data_only restore of the full backup into that existing schema.
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[("location", &dst2_loc), ("data_only", "true")])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &dump));
    assert!(matches!(out[0].1, Ok(FileOutcome::Restored { .. })), "{out:?}");
    assert_eq!(rows(&dst2, "shop"), rows(&src, "shop"));
}

#[test]
fn whole_cluster_as_all_sql() {
    let src = cluster(15, &[]);
    make_shop(&src, "shop");
    src.sql("CREATE DATABASE \"other db\"").unwrap();
    src.sql_db("other db", "CREATE TABLE t AS SELECT 'ü' AS x").unwrap();
    src.sql("CREATE DATABASE skipped").unwrap();
    let rt = rt();
    let sink = rt
        .block_on(backup(&backup_options(&[
            ("location", &location(&src, ADMIN, ADMIN_PW, None)),
            ("exclude_databases", "skipped"),
        ])))
        .unwrap();
    assert_eq!(sink.files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["/all.sql"]);
    src.sql("DROP DATABASE skipped").unwrap();

    let dst = cluster(15, &[]);
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[("location", &location(&dst, ADMIN, ADMIN_PW, None))])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &files_of(&sink)));
    assert!(matches!(&out[0].1, Ok(FileOutcome::Restored { warnings }) if warnings.is_empty()), "{out:?}");
    assert_eq!(stable(&tool(&dst, "pg_dumpall", &[])), stable(&tool(&src, "pg_dumpall", &[])));
}

#[test]
fn cross_version_12_and_15_into_17_and_18() {
    let rt = rt();
    let targets = [cluster(17, &[]), cluster(18, &[])];
    for t in &targets {
        // The newest servers are dumped with their own major's tools.
        let plan = rt
            .block_on(pg_logical::plan_backup(&backup_options(&[(
                "location",
                &location(t, ADMIN, ADMIN_PW, None),
            )])))
            .unwrap();
        assert_eq!(plan.tools.major, t.major());
    }
    for src_major in [12, 15] {
        let src = cluster(src_major, &[]);
        make_shop(&src, "shop");
        let opts = backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("shop")))]);
        let plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
        assert_eq!(plan.tools.major, src_major.max(14), "the oldest tools at least as new as the server");
        drop(plan);
        let sink = rt.block_on(backup(&opts)).unwrap();
        for t in &targets {
            let mut r = rt
                .block_on(Restorer::new(restore_options(&[
                    ("location", &location(t, ADMIN, ADMIN_PW, None)),
                    ("create_db", "true"),
                    ("restore_globals", "true"),
                ])))
                .unwrap();
            let out = rt.block_on(restore_walk(&mut r, &files_of(&sink)));
            for (path, o) in &out {
                assert!(o.is_ok(), "PG {src_major} → {}: {path}: {o:?}", t.major());
            }
            assert_eq!(rows(t, "shop"), rows(&src, "shop"), "PG {src_major} → {}", t.major());
            assert_eq!(password_hashes(t), password_hashes(&src));
            t.sql("DROP DATABASE shop; DROP ROLE alice; DROP ROLE bob; DROP ROLE \"rôle spécial\"").unwrap();
        }
    }
}

#[test]
fn failing_dump_fails_with_the_servers_message_and_no_role_passwords() {
    let src = cluster(15, &[User::new("limited").password("lim-pw")]);
    src.sql("CREATE DATABASE app").unwrap();
    src.sql_db("app", "CREATE TABLE open AS SELECT 1 AS x; GRANT SELECT ON open TO limited; CREATE TABLE secret AS SELECT 2 AS y;")
        .unwrap();
    let rt = rt();
    let opts = backup_options(&[("location", &location(&src, "limited", "lim-pw", Some("app")))]);
    let plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
    assert!(plan.no_role_passwords, "pg_authid is not readable by a plain role");
    assert!(plan.warnings[0].contains("--no-role-passwords"));
    let mut sink = MemSink::default();
    let mut result = Ok(());
    for mut s in plan.into_sources() {
        if let Err(e) = rt.block_on(s.run(&mut sink)) {
            result = Err(e);
            break;
        }
    }
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, LogicalError::ChildFailed { .. }), "{err:?}");
    assert!(text.contains("permission denied for table secret"), "{text}");
    assert!(text.contains("exit status 1"), "{text}");
    let globals = sink.file("/globals.sql");
    assert!(globals.ended && !String::from_utf8_lossy(&globals.body).contains("SCRAM"));
    assert!(!sink.file("/app.dump").ended, "a failed dump is never ended as a good file");
}

#[test]
fn cancelled_backup_leaves_no_process_no_session_no_private_file() {
    let src = cluster(15, &[]);
    src.sql("CREATE DATABASE big").unwrap();
    src.sql_db("big", "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 300000) g").unwrap();
    let rt = rt();
    // pg_dumpall runs pg_dump through a shell: the whole group must go.
    let opts = backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, None))]);
    let mut plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
    let private = plan.private_dir().to_owned();
    assert!(private.join("pgpass").is_file());
    let mut source = std::mem::take(&mut plan.sources).into_iter().next().unwrap();
    drop(plan);
    let mut sink = MemSink { hang: vec!["/all.sql".into()], ..Default::default() };
    let group = rt.block_on(async {
        let mut group = None;
        {
            let run = source.run(&mut sink);
            tokio::pin!(run);
            let deadline = tokio::time::sleep(std::time::Duration::from_secs(3));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut run => panic!("the hanging sink blocks the dump"),
                    _ = &mut deadline => break,
                    _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                        if group.is_none() {
                            group = processes_of(&private).into_iter().find(|&p| comm(p) == "pg_dumpall");
                            if let Some(pid) = group {
                                assert_no_secret_in_proc(pid);
                            }
                        }
                    }
                }
            }
            // `run` is dropped here: the source is cancelled.
        }
        let group = group.expect("pg_dumpall was running");
        for _ in 0..50 {
            if live_in_group(group).is_empty() && no_dump_session(&src) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        group
    });
    assert!(live_in_group(group).is_empty(), "processes of group {group} alive: {:?}", live_in_group(group));
    assert!(processes_of(&private).is_empty());
    assert!(no_dump_session(&src), "a dump session survived");
    drop(source);
    assert!(!private.exists(), "the private directory is removed with the last source");
}

/// The password is neither on the command line nor in the environment of a child: it is in a
/// private 0600 passfile.
fn assert_no_secret_in_proc(pid: i32) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let needle = ADMIN_PW.as_bytes();
    for (what, bytes) in [("cmdline", &cmdline), ("environ", &environ)] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle), "password in /proc/{pid}/{what}");
    }
    let vars: Vec<String> =
        environ.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    assert!(!vars.iter().any(|v| v.starts_with("PGPASSWORD=")), "{vars:?}");
    let passfile = vars.iter().find_map(|v| v.strip_prefix("PGPASSFILE=")).expect("PGPASSFILE is set");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(passfile).unwrap().permissions().mode() & 0o777, 0o600);
}

fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_owned()
}

fn no_dump_session(cluster: &TestCluster) -> bool {
    cluster
        .sql("SELECT count(*) FROM pg_stat_activity WHERE application_name IN ('pg_dump', 'pg_dumpall')")
        .unwrap()
        == "0"
}

#[test]
fn skip_and_stop_are_the_consumers_choice() {
    let src = cluster(15, &[]);
    src.sql("CREATE DATABASE big").unwrap();
    src.sql_db("big", "CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 200000) g").unwrap();
    let rt = rt();
    let opts = backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("big")))]);
    let plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
    let private = plan.private_dir().to_owned();
    let mut sink =
        MemSink { skip: vec!["/globals.sql".into()], stop: vec!["/big.dump".into()], ..Default::default() };
    let mut reports = Vec::new();
    for mut s in plan.into_sources() {
        reports.push(rt.block_on(s.run(&mut sink)).unwrap());
    }
    assert_eq!(reports[0].outcome, DumpOutcome::Skipped);
    assert_eq!(reports[0].bytes, 0);
    assert_eq!(reports[1].outcome, DumpOutcome::Stopped);
    assert!(sink.files.iter().all(|f| f.ended));
    assert!(sink.file("/globals.sql").body.is_empty());
    assert!(processes_of(&private).is_empty());
}

#[test]
fn exit_on_error_stops_at_the_first_error() {
    let src = cluster(15, &[]);
    src.sql("CREATE DATABASE app").unwrap();
    src.sql_db("app", "CREATE TABLE a (x int); CREATE TABLE b (y int); INSERT INTO b VALUES (1);").unwrap();
    let rt = rt();
    let sink = rt
        .block_on(backup(&backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("app")))])))
        .unwrap();
    let dump = vec![("/app.dump".to_owned(), sink.file("/app.dump").body.clone())];
    for exit_on_error in [true, false] {
        let dst = cluster(15, &[]);
        dst.sql("CREATE DATABASE app").unwrap();
        dst.sql_db("app", "CREATE TABLE a (conflict text)").unwrap();
        let mut r = rt
            .block_on(Restorer::new(restore_options(&[
                ("location", &location(&dst, ADMIN, ADMIN_PW, None)),
                ("exit_on_error", if exit_on_error { "true" } else { "false" }),
            ])))
            .unwrap();
        let out = rt.block_on(restore_walk(&mut r, &dump));
        let err = out[0].1.as_ref().unwrap_err();
        assert!(err.contains("relation \"a\" already exists"), "{err}");
        let b = dst.sql_db("app", "SELECT count(*) FROM pg_tables WHERE tablename = 'b'").unwrap();
        assert_eq!(b, if exit_on_error { "0" } else { "1" }, "exit_on_error={exit_on_error}: {err}");
    }
}

#[test]
fn go_plugin_layout_built_by_hand_restores() {
    let src = cluster(15, &[]);
    make_shop(&src, "shop");
    // The Go plugin's later layout, from the stock tools.
    let conn = |db: &str| format!("dbname={db}");
    let globals = {
        let out = std::process::Command::new(tools_dir(15).join("pg_dumpall"))
            .env_clear()
            .env("PGHOST", src.socket_dir())
            .env("PGPORT", src.port().to_string())
            .env("PGUSER", "postgres")
            .args(["--globals-only"])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let dump = {
        let out = std::process::Command::new(tools_dir(15).join("pg_dump"))
            .env_clear()
            .env("PGHOST", src.socket_dir())
            .env("PGPORT", src.port().to_string())
            .env("PGUSER", "postgres")
            .args(["-Fc", "-d", &conn("shop")])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    };
    let files = vec![
        ("/00000-globals.sql".to_owned(), globals),
        ("/00001-shop.dump".to_owned(), dump),
        ("/manifest.json".to_owned(), br#"{"version":2}"#.to_vec()),
    ];
    let dst = cluster(15, &[]);
    let rt = rt();
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &location(&dst, ADMIN, ADMIN_PW, None)),
            ("create_db", "true"),
            ("restore_globals", "true"),
        ])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &files));
    assert!(matches!(out[0].1, Ok(FileOutcome::Restored { .. })), "{out:?}");
    assert!(matches!(out[1].1, Ok(FileOutcome::Restored { .. })), "{out:?}");
    assert_eq!(out[2].1, Ok(FileOutcome::Read));
    assert_eq!(rows(&dst, "shop"), rows(&src, "shop"));
    assert_eq!(password_hashes(&dst), password_hashes(&src));
}

/// A `-d` argument naming `db` as data (psql expands a `-d` holding `=`; the quoted name is not
/// expanded again).
fn conn(db: &str) -> String {
    format!("dbname={}", pg_config::quote_conninfo_value(db))
}

#[test]
fn database_names_are_data() {
    let src = cluster(15, &[]);
    let names = ["dbname=postgres port=1", "it's \"quoted\" ü", "a/b\nc", "..", "-x"];
    for (i, n) in names.iter().enumerate() {
        src.sql(&format!("CREATE DATABASE {}", quote_ident(n))).unwrap();
        src.sql_db(&conn(n), &format!("CREATE TABLE marker AS SELECT {i} AS i")).unwrap();
    }
    let dst = cluster(15, &[]);
    let rt = rt();
    for (i, n) in names.iter().enumerate() {
        let sink = rt
            .block_on(backup(&backup_options(&[
                ("location", &location(&src, ADMIN, ADMIN_PW, None)),
                ("database", n),
            ])))
            .unwrap();
        let dump = &sink.files[1];
        let file = dump.path.strip_prefix('/').unwrap();
        assert!(!file.contains('/') && !file.contains('\n') && !file.starts_with('.'), "{file:?}");
        assert_eq!(
            pg_logical::names::classify(file).unwrap(),
            Some(pg_logical::names::FileKind::Dump { db: n.to_string(), go_layout: false })
        );
        let mut r = rt
            .block_on(Restorer::new(restore_options(&[
                ("location", &location(&dst, ADMIN, ADMIN_PW, None)),
                ("create_db", "true"),
            ])))
            .unwrap();
        let out = rt.block_on(restore_walk(&mut r, &files_of(&sink)));
        assert!(out.iter().all(|(_, o)| o.is_ok()), "{n:?}: {out:?}");
        assert_eq!(dst.sql_db(&conn(n), "SELECT i FROM marker").unwrap(), i.to_string(), "{n:?}");
    }
    // Nothing landed in `postgres` (the name that looks like a connection string).
    assert_eq!(dst.sql("SELECT count(*) FROM pg_tables WHERE tablename = 'marker'").unwrap(), "0");
}

#[test]
fn restore_refusals() {
    let src = cluster(15, &[]);
    make_shop(&src, "app");
    let rt = rt();
    let sink = rt
        .block_on(backup(&backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("app")))])))
        .unwrap();
    let dst = cluster(15, &[]);
    let dst_loc = location(&dst, ADMIN, ADMIN_PW, None);
    // Missing target, create_db=false.
    let mut r = rt.block_on(Restorer::new(restore_options(&[("location", &dst_loc)]))).unwrap();
    let dump = vec![("/app.dump".to_owned(), sink.file("/app.dump").body.clone())];
    let out = rt.block_on(restore_walk(&mut r, &dump));
    let e = out[0].1.as_ref().unwrap_err();
    assert!(e.contains("database \"app\" does not exist on the target: set create_db=true"), "{e}");

    // restore_globals with the walk delivering app.dump before globals.sql: the dump is
    // refused with instructions, the globals are still restored.
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &dst_loc),
            ("create_db", "true"),
            ("restore_globals", "true"),
        ])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &files_of(&sink)));
    assert_eq!(out[0].0, "/app.dump");
    let e = out[0].1.as_ref().unwrap_err();
    assert!(e.contains("needs globals.sql first"), "{e}");
    assert!(out[1].1.is_ok(), "{out:?}");
    assert_eq!(dst.sql("SELECT count(*) FROM pg_roles WHERE rolname = 'alice'").unwrap(), "1");
    // The order a random-access caller uses restores everything.
    let files = files_of(&sink);
    let order = pg_logical::restore_order(files.iter().map(|(p, _)| p.as_str()));
    assert_eq!(order, ["/globals.sql", "/app.dump"]);

    // `database` names one target: a second dump in the same walk is refused (each dump goes
    // to its own database when it is unset); create_db on an existing database is refused.
    dst.sql("CREATE DATABASE target").unwrap();
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &dst_loc),
            ("database", "target"),
            ("no_owner", "true"),
        ])))
        .unwrap();
    let body = sink.file("/app.dump").body.clone();
    let out = rt.block_on(restore_walk(
        &mut r,
        &[("/a.dump".into(), body.clone()), ("/b.dump".into(), body.clone())],
    ));
    assert!(out[0].1.is_ok(), "{out:?}");
    assert!(out[1].1.as_ref().unwrap_err().contains("names one target"), "{out:?}");
    assert_eq!(dst.sql_db("target", "SELECT count(*) FROM customers").unwrap(), "3");
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[("location", &dst_loc), ("create_db", "true")])))
        .unwrap();
    let out = rt.block_on(restore_walk(&mut r, &[("/target.dump".into(), body)]));
    assert!(
        out[0].1.as_ref().unwrap_err().contains("already exists on the target: set create_db=false"),
        "{out:?}"
    );

    // A file that is not part of a logical backup.
    let out = rt.block_on(restore_walk(&mut r, &[("/data/PG_VERSION".to_owned(), b"15\n".to_vec())]));
    assert!(out[0].1.as_ref().unwrap_err().contains("unable to restore"), "{out:?}");
}

#[test]
fn older_client_than_server_is_refused_before_anything() {
    let src = cluster(15, &[]);
    let rt = rt();
    let loc = location(&src, ADMIN, ADMIN_PW, None);
    let opts = backup_options(&[("location", &loc), ("pg_bin_dir", tools_dir(14).to_str().unwrap())]);
    let e = rt.block_on(pg_logical::plan_backup(&opts)).unwrap_err().to_string();
    assert!(e.contains("PostgreSQL 14") && e.contains("older than the server (PostgreSQL 15)"), "{e}");
    let mut opts = backup_options(&[("location", &loc)]);
    opts.connection.tool_search = pg_logical::ToolSearch::dirs([tools_dir(14)]);
    let e = rt.block_on(pg_logical::plan_backup(&opts)).unwrap_err().to_string();
    assert!(e.contains("no PostgreSQL client tools of major 15 or newer"), "{e}");
    let mut ropts = restore_options(&[("location", &loc)]);
    ropts.connection.tool_search = pg_logical::ToolSearch::dirs([tools_dir(14)]);
    assert!(rt.block_on(Restorer::new(ropts)).is_err());
    // Wrong password: an error that never shows it.
    let bad = backup_options(&[("location", &location(&src, ADMIN, "wrong-secret", None))]);
    let e = rt.block_on(pg_logical::plan_backup(&bad)).unwrap_err().to_string();
    assert!(e.contains("28P01") || e.contains("password"), "{e}");
    assert!(!e.contains("wrong-secret"), "{e}");
}

#[test]
fn a_panicking_consumer_leaves_no_process_and_no_private_file() {
    let src = cluster(15, &[]);
    src.sql("CREATE DATABASE big").unwrap();
    src.sql_db("big", "CREATE TABLE t AS SELECT g FROM generate_series(1, 100000) g").unwrap();
    let rt = rt();
    let opts = backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("big")))]);
    let plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
    let private = plan.private_dir().to_owned();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async move {
            let mut sink = PanickingSink;
            let plan = plan;
            for mut s in plan.into_sources() {
                let _ = s.run(&mut sink).await;
            }
        })
    }));
    assert!(result.is_err(), "the consumer panicked");
    assert!(!private.exists(), "private directory left behind after a panic");
    rt.block_on(async {
        for _ in 0..50 {
            if processes_of(&private).is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    });
    assert!(processes_of(&private).is_empty());
}

struct PanickingSink;

impl record_sink::RecordSink for PanickingSink {
    async fn record(
        &mut self,
        _: &record_sink::Record,
    ) -> Result<record_sink::Wants, record_sink::SinkError> {
        Ok(record_sink::Wants::Body)
    }
    async fn data(&mut self, _: bytes::Bytes) -> Result<record_sink::Flow, record_sink::SinkError> {
        panic!("the consumer panics on the first chunk")
    }
    async fn end_file(&mut self) -> Result<(), record_sink::SinkError> {
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), record_sink::SinkError> {
        Ok(())
    }
    async fn abort(&mut self, _: &str) -> Result<(), record_sink::SinkError> {
        Ok(())
    }
}

#[test]
fn inline_pem_over_verify_full_tls_with_a_client_certificate() {
    use pg_testkit::{Auth, ClusterOptions, Tls};
    let src = TestCluster::start_with(
        15,
        ClusterOptions::new().tls(Tls::Only).auth(Auth::Cert).user(User::new(ADMIN).superuser()),
    )
    .unwrap();
    src.sql("CREATE DATABASE app").unwrap();
    src.sql_db("app", "CREATE TABLE t AS SELECT 'tls ✓' AS x").unwrap();
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap();
    let (cert, key) = src.client_cert_paths(ADMIN).unwrap();
    let opts = backup_options(&[
        ("location", &format!("postgres://{ADMIN}@localhost:{}/app", src.port())),
        ("ssl_mode", "verify-full"),
        ("ssl_root_cert_data", &read(src.ca_cert_path().unwrap())),
        ("ssl_cert_data", &read(&cert)),
        ("ssl_key_data", &read(&key)),
    ]);
    let rt = rt();
    let plan = rt.block_on(pg_logical::plan_backup(&opts)).unwrap();
    let private = plan.private_dir().to_owned();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o700);
    for f in ["sslcert", "sslkey", "sslrootcert"] {
        assert_eq!(std::fs::metadata(private.join(f)).unwrap().permissions().mode() & 0o777, 0o600, "{f}");
    }
    let mut sink = MemSink::default();
    for mut s in plan.into_sources() {
        rt.block_on(s.run(&mut sink)).unwrap();
    }
    assert!(!private.exists());
    assert!(sink.file("/app.dump").body.starts_with(b"PGDMP"));
    // Without the CA, verify-full fails before anything is emitted.
    let bad = backup_options(&[
        ("location", &format!("postgres://{ADMIN}@localhost:{}/app", src.port())),
        ("ssl_mode", "verify-full"),
        ("ssl_cert_data", &read(&cert)),
        ("ssl_key_data", &read(&key)),
    ]);
    assert!(rt.block_on(pg_logical::plan_backup(&bad)).is_err());
}

// The oldest installed tools are 14, and a pg_dump writes SQL for servers of its own major
// (`CREATE DATABASE … LOCALE` does not exist in 12): a dump of 12 is restored into 14.
pg_testkit::per_major!(fn round_trip(major) {
    let src = cluster(major, &[]);
    make_shop(&src, "shop");
    let rt = rt();
    let sink = rt
        .block_on(backup(&backup_options(&[("location", &location(&src, ADMIN, ADMIN_PW, Some("shop")))])))
        .unwrap();
    let dst = cluster(major.max(14), &[]);
    let mut r = rt
        .block_on(Restorer::new(restore_options(&[
            ("location", &location(&dst, ADMIN, ADMIN_PW, None)),
            ("create_db", "true"),
            ("restore_globals", "true"),
        ])))
        .unwrap();
    assert_eq!(r.tools().major, major.max(14));
    let out = rt.block_on(restore_walk(&mut r, &files_of(&sink)));
    for (path, o) in &out {
        assert!(matches!(o, Ok(FileOutcome::Restored { warnings }) if warnings.is_empty()), "{path}: {o:?}");
    }
    assert_eq!(schema_of(&dst, "shop"), schema_of(&src, "shop"));
    assert_eq!(rows(&dst, "shop"), rows(&src, "shop"));
    assert_eq!(password_hashes(&dst), password_hashes(&src));
});
