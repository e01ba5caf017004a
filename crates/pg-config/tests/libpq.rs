//! pg-config against the real libpq: `psql` as an oracle for parsing (no server needed:
//! libpq names the socket it tried), and a real server for the child-process hand-off.
// Deliberate non-runs are reported on stderr, which the test harness captures.
#![allow(clippy::print_stderr)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use pg_config::{Config, Env, LIBPQ_ENV_VARS, Password};
use pg_testkit::{Auth, ClusterOptions, TestCluster, User};

fn psql_path() -> PathBuf {
    pg_testkit::client_bin("psql").expect("psql (run scripts/ setup, or install postgresql-client)")
}

/// `psql` with nothing inherited from our environment but what `env` gives.
fn psql(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(psql_path());
    cmd.env_clear().env("PATH", "/usr/bin:/bin").args(["-X", "-A", "-t"]).args(args);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    cmd.stdin(Stdio::null()).output().expect("run psql")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A directory that does not exist: libpq's connection error names the socket it tried.
const NOWHERE: &str = "/nonexistent-pg-config-test";

#[test]
fn libpq_reads_our_connection_strings_the_same_way() {
    let odd_dbnames = ["plain", "a=b", "it's \\ odd", " spaced ", "postgres://x@y/z", "café"];
    let env = Env::empty().with_os_user(Some("nobody"));
    for (i, dbname) in odd_dbnames.iter().enumerate() {
        let port = 6000 + i as u16;
        let mut cfg = Config::parse(&format!("host={NOWHERE} port={port} user=u connect_timeout=1")).unwrap();
        cfg.set_dbname(dbname).unwrap();
        cfg.set_password(Password::new("pw"));
        let resolved = cfg.resolve_with(&env).unwrap();
        let socket = resolved.targets[0].socket_path().unwrap();
        let expected = format!("connection to server on socket \"{}\" failed", socket.display());

        // As a -d argument (expanded once by libpq, the dbname inside is not).
        let conninfo = resolved.to_keyword_string_without_password();
        assert!(!conninfo.contains("pw"));
        let out = psql(&["-d", &conninfo, "-c", "select 1"], &[]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains(&expected), "{conninfo}: {}", stderr(&out));

        // Through the environment only.
        let out = psql(&["-c", "select 1"], &resolved.to_libpq_env());
        assert!(stderr(&out).contains(&expected), "env: {}", stderr(&out));
    }

    // URI forms of a socket directory.
    for uri in [
        format!("postgresql:///db?host={NOWHERE}&port=5999"),
        format!("postgresql://{}:5998/db", NOWHERE.replace('/', "%2F")),
        format!(
            "postgresql://u@{}:5997,{}:5996/db?connect_timeout=1",
            NOWHERE.replace('/', "%2F"),
            NOWHERE.replace('/', "%2f")
        ),
    ] {
        let resolved = Config::parse(&uri).unwrap().resolve_with(&env).unwrap();
        let out = psql(&["-d", &uri, "-c", "select 1"], &[]);
        for t in &resolved.targets {
            let socket = t.socket_path().unwrap();
            let expected = format!("connection to server on socket \"{}\" failed", socket.display());
            assert!(stderr(&out).contains(&expected), "{uri}: {}", stderr(&out));
        }
    }
}

#[test]
fn libpq_rejects_what_we_reject() {
    for bad in [
        "foo=bar",
        "password='it''s'",
        "dbname='unterminated",
        "postgresql://[::1",
        "postgresql://[]",
        "postgresql://h?foo=bar",
        "postgresql://h?sslmode",
        "postgresql://h/%zz",
        "postgresql://h/a%00b",
        "sslmode=bogus host=/nonexistent-pg-config-test",
        "port=5432,5433 host=/a,/b,/c",
    ] {
        assert!(
            Config::parse(bad).and_then(|c| c.resolve_with(&Env::empty().with_os_user(Some("u")))).is_err(),
            "{bad}"
        );
        let out = psql(&["-d", bad, "-c", "select 1"], &[]);
        assert!(!out.status.success(), "{bad}");
        let err = stderr(&out);
        assert!(!err.contains("connection to server"), "libpq accepted {bad:?}: {err}");
    }
}

/// The hand-off pg_dump and psql use, against a real server: password only through the
/// environment or a 0600 passfile, database names with `=`, quotes and URI look-alikes.
#[test]
fn child_processes_reach_odd_databases_without_password_on_argv() {
    let majors = pg_testkit::selected_majors();
    let Some(&major) = majors.last() else {
        eprintln!("no PostgreSQL major selected (PG_VERSIONS): not run");
        return;
    };
    let password = "pw 'q\" :\\ @/x";
    let options =
        ClusterOptions::new().auth(Auth::ScramSha256).user(User::new("alice").password(password).superuser());
    let cluster = TestCluster::start_with(major, options).unwrap();
    let odd = "a=b 'c' \\d postgres://x@y/z";
    cluster.sql(&format!("create database \"{odd}\"")).unwrap();

    let mut cfg = Config::parse(&cluster.url("alice", Some(password))).unwrap();
    assert_eq!(cfg.password().unwrap().expose(), password);
    cfg.set_dbname(odd).unwrap();
    cfg.set_keyword("sslmode", "disable").unwrap();
    let resolved = cfg.resolve_with(&Env::empty().with_os_user(Some("nobody"))).unwrap();
    let query = "select current_database() || '|' || current_user";
    let want = format!("{odd}|alice");

    // 1. Everything through the environment (PGPASSWORD, PGDATABASE).
    let out = psql(&["-c", query], &resolved.to_libpq_env());
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want);

    // 2. The keyword string on argv (no password in it), the password in a 0600 passfile.
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&passfile).unwrap();
        f.write_all(resolved.passfile_contents().unwrap().expose().as_bytes()).unwrap();
    }
    let conninfo = resolved.to_keyword_string_without_password();
    assert!(!conninfo.contains(password));
    let out =
        psql(&["-d", &conninfo, "-c", query], &[("PGPASSFILE", passfile.to_string_lossy().into_owned())]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), want);

    // 3. Our own passfile lookup finds the same entry (resolution with that file).
    let mut no_pw = cfg.clone();
    no_pw.unset(pg_config::Param::Password);
    no_pw.set_keyword("passfile", passfile.to_str().unwrap()).unwrap();
    let found = no_pw.resolve_with(&Env::empty().with_os_user(Some("nobody"))).unwrap();
    assert_eq!(found.targets[0].password().map(Password::expose), Some(password));

    // Every variable we set is one libpq reads.
    assert!(resolved.to_libpq_env().iter().all(|(k, _)| LIBPQ_ENV_VARS.contains(k)));
}
