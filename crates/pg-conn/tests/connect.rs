//! The connection against real servers of every selected major: authentication methods, TLS
//! and libpq's sslmode semantics (compared with libpq itself, through psql), client
//! certificates, Unix sockets, replication commands, and readable errors.

use std::process::{Command, Stdio};
use std::time::Duration;

use pg_config::Config;
use pg_conn::{Client, ErrorKind};
use pg_testkit::{Auth, ClusterOptions, TestCluster, Tls, User, per_major};
use pg_wire::startup::{AuthMethod, StartupFailure};

const PASSWORD: &str = "pa ss'w\\ord";

fn quote(v: &str) -> String {
    pg_config::quote_conninfo_value(v)
}

/// A keyword connection string for TCP to `cluster` as `user`.
fn tcp(cluster: &TestCluster, user: &str, extra: &str) -> String {
    format!("host=127.0.0.1 port={} user={} dbname=postgres {extra}", cluster.port(), quote(user))
}

async fn connect(conninfo: &str) -> Result<Client, pg_conn::Error> {
    let config = Config::parse(conninfo).expect("valid conninfo");
    Client::connect(&config).await
}

async fn one(client: &mut Client, sql: &str) -> String {
    let rows = client.simple_query(sql).await.unwrap();
    assert_eq!(rows.len(), 1, "{sql}");
    rows[0].get(0).unwrap_or("NULL").to_owned()
}

per_major!(async fn password_methods(major) {
    for (auth, method) in [
        (Auth::Trust, AuthMethod::None),
        (Auth::Password, AuthMethod::Cleartext),
        (Auth::Md5, AuthMethod::Md5),
        (Auth::ScramSha256, AuthMethod::ScramSha256),
    ] {
        let options = ClusterOptions::new().auth(auth).user(User::new("alice").password(PASSWORD));
        let cluster = TestCluster::start_with(major, options).unwrap();
        let conninfo = tcp(&cluster, "alice", &format!("password={} sslmode=disable", quote(PASSWORD)));
        let mut client = connect(&conninfo).await.unwrap_or_else(|e| panic!("{auth:?}: {e}"));
        assert_eq!(client.session().auth_method, method, "{auth:?}");
        assert_eq!(one(&mut client, "select current_user").await, "alice");
        assert_eq!(client.server_major(), Some(major));
        client.close().await.unwrap();

        // The same over the Unix socket (the password methods apply there too).
        let socket = format!(
            "host={} port={} user=alice dbname=postgres password={}",
            quote(&cluster.socket_dir().to_string_lossy()),
            cluster.port(),
            quote(PASSWORD)
        );
        let mut client = connect(&socket).await.unwrap_or_else(|e| panic!("{auth:?} socket: {e}"));
        assert_eq!(one(&mut client, "select coalesce(inet_server_addr()::text, 'socket')").await, "socket");
        assert!(!client.is_tls());
    }
});

per_major!(async fn scram_plus_over_verified_tls(major) {
    let options = ClusterOptions::new()
        .auth(Auth::ScramSha256)
        .tls(Tls::On)
        .user(User::new("alice").password(PASSWORD).replication());
    let cluster = TestCluster::start_with(major, options).unwrap();
    let ca = cluster.ca_cert_path().unwrap().display().to_string();
    let conninfo = format!(
        "host=localhost hostaddr=127.0.0.1 port={} user=alice dbname=postgres password={} \
         sslmode=verify-full sslrootcert={} channel_binding=require",
        cluster.port(),
        quote(PASSWORD),
        quote(&ca)
    );
    let mut client = connect(&conninfo).await.unwrap();
    assert_eq!(client.session().auth_method, AuthMethod::ScramSha256Plus);
    assert!(client.is_tls());
    assert_eq!(one(&mut client, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").await, "t");

    // The same on a replication connection: IDENTIFY_SYSTEM works, SQL does not.
    let mut repl = connect(&format!("{conninfo} replication=true")).await.unwrap();
    let rows = repl.simple_query("IDENTIFY_SYSTEM").await.unwrap();
    assert_eq!(rows[0].columns(), ["systemid", "timeline", "xlogpos", "dbname"]);
    let sysid = cluster.sql("select system_identifier from pg_control_system()").unwrap();
    assert_eq!(rows[0].get(0), Some(sysid.as_str()));
    assert_eq!(rows[0].get(1), Some("1"));
    assert!(rows[0].get(2).unwrap().contains('/'));
    assert_eq!(rows[0].get(3), None);
    let err = repl.simple_query("SELECT 1").await.unwrap_err();
    assert_eq!(err.code(), Some("0A000"), "{err}");
    // The session is still usable after a server error.
    let rows = repl.simple_query("SHOW wal_segment_size").await.unwrap();
    assert_eq!(rows[0].get(0), Some("16MB"));
    repl.close().await.unwrap();
});

per_major!(async fn client_certificate(major) {
    let options = ClusterOptions::new().auth(Auth::Cert).tls(Tls::Only).user(User::new("alice"));
    let cluster = TestCluster::start_with(major, options).unwrap();
    let (cert, key) = cluster.client_cert_paths("alice").unwrap();
    let conninfo = tcp(
        &cluster,
        "alice",
        &format!(
            "sslmode=verify-ca sslrootcert={} sslcert={} sslkey={}",
            quote(&cluster.ca_cert_path().unwrap().to_string_lossy()),
            quote(&cert.to_string_lossy()),
            quote(&key.to_string_lossy())
        ),
    );
    let mut client = connect(&conninfo).await.unwrap();
    assert_eq!(one(&mut client, "select current_user").await, "alice");
    assert!(client.is_tls());

    // Without the certificate the server refuses, and says why.
    let bare = tcp(
        &cluster,
        "alice",
        &format!("sslmode=verify-ca sslrootcert={}", quote(&cluster.ca_cert_path().unwrap().to_string_lossy())),
    );
    let err = connect(&bare).await.unwrap_err();
    assert_eq!(err.code(), Some("28000"), "{err}");
});

/// What libpq (psql) makes of a connection string: `Ok(ssl)` or `Err(message)`.
fn libpq_outcome(conninfo: &str) -> Result<bool, String> {
    let psql = pg_testkit::client_bin("psql").unwrap();
    let out = Command::new(psql)
        .env_clear()
        .env("PGPASSWORD", PASSWORD)
        .env("HOME", "/nonexistent")
        .args([
            "-X",
            "-A",
            "-t",
            "-d",
            conninfo,
            "-c",
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "t")
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

per_major!(async fn sslmode_matrix_matches_libpq(major) {
    for tls in [Tls::Off, Tls::On, Tls::Only, Tls::RejectTls] {
        let options =
            ClusterOptions::new().auth(Auth::ScramSha256).tls(tls).user(User::new("alice").password(PASSWORD));
        let cluster = TestCluster::start_with(major, options).unwrap();
        // A CA is needed for the verify modes; any server's CA will do for a non-TLS server.
        let ca = match cluster.ca_cert_path() {
            Some(p) => p.to_path_buf(),
            None => {
                let other = TestCluster::start_with(major, ClusterOptions::new().tls(Tls::On)).unwrap();
                let p = std::env::temp_dir().join(format!("pgplakar-ca-{}-{major}.pem", std::process::id()));
                std::fs::copy(other.ca_cert_path().unwrap(), &p).unwrap();
                p
            }
        };
        for mode in ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] {
            let conninfo = format!(
                "host=localhost port={} user=alice dbname=postgres sslmode={mode} sslrootcert={}",
                cluster.port(),
                quote(&ca.to_string_lossy())
            );
            let expected = libpq_outcome(&conninfo);
            let ours = match connect(&format!("{conninfo} password={}", quote(PASSWORD))).await {
                Ok(mut c) => {
                    let ssl = one(&mut c, "select ssl from pg_stat_ssl where pid = pg_backend_pid()").await == "t";
                    assert_eq!(ssl, c.is_tls());
                    Ok(ssl)
                }
                Err(e) => Err(e.to_string()),
            };
            // The cells that show libpq's retries, pinned so the comparison cannot pass vacuously.
            let pinned = match (tls, mode) {
                (Tls::Off, "prefer") | (Tls::RejectTls, "prefer") | (Tls::Off, "allow") => Some(Ok(false)),
                (Tls::On, "prefer") | (Tls::Only, "allow") | (Tls::On, "verify-full") => Some(Ok(true)),
                (Tls::Off, "require") | (Tls::Only, "disable") | (Tls::RejectTls, "require") => Some(Err(())),
                _ => None,
            };
            if let Some(p) = pinned {
                assert_eq!(ours.as_ref().map(|s| *s).map_err(|_| ()), p, "server {tls:?}, sslmode={mode}: {ours:?}");
            }
            match (&expected, &ours) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "server {tls:?}, sslmode={mode}: TLS used by libpq {a}, by us {b}"),
                (Err(_), Err(_)) => {}
                _ => panic!("server {tls:?}, sslmode={mode}: libpq {expected:?}, we {ours:?}"),
            }
        }
    }
});

per_major!(async fn verify_full_rejects_wrong_ca_and_wrong_host(major) {
    let options = ClusterOptions::new().auth(Auth::Trust).tls(Tls::On);
    let cluster = TestCluster::start_with(major, options).unwrap();
    let other = TestCluster::start_with(major, ClusterOptions::new().tls(Tls::On)).unwrap();
    let wrong_ca = other.ca_cert_path().unwrap().to_string_lossy().into_owned();
    let right_ca = cluster.ca_cert_path().unwrap().to_string_lossy().into_owned();

    let conninfo = |host: &str, ca: &str| {
        format!(
            "host={host} hostaddr=127.0.0.1 port={} user=postgres dbname=postgres sslmode=verify-full sslrootcert={}",
            cluster.port(),
            quote(ca)
        )
    };
    let err = connect(&conninfo("localhost", &wrong_ca)).await.unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Tls(_)), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("failed during TLS") && text.contains("certificate"), "{text}");

    let err = connect(&conninfo("db.example.com", &right_ca)).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("certificate") && text.contains("db.example.com"), "{text}");

    connect(&conninfo("localhost", &right_ca)).await.unwrap().close().await.unwrap();
});

per_major!(async fn authentication_errors_are_distinct_and_readable(major) {
    let options = ClusterOptions::new()
        .auth(Auth::ScramSha256)
        .user(User::new("alice").password(PASSWORD))
        .user(User::new("bob").password(PASSWORD))
        .hba_line("host all bob 127.0.0.1/32 reject");
    let cluster = TestCluster::start_with(major, options).unwrap();

    let err = connect(&tcp(&cluster, "alice", "password=wrong sslmode=disable")).await.unwrap_err();
    assert_eq!(err.startup_failure(), Some(StartupFailure::PasswordFailed), "{err}");
    assert_eq!(err.code(), Some("28P01"));
    let text = err.to_string();
    assert!(text.contains("password authentication failed for user \"alice\""), "{text}");
    assert!(text.contains("failed during authentication") && text.contains("127.0.0.1"), "{text}");
    assert!(!text.contains("wrong"), "the password must not appear: {text}");

    let err = connect(&tcp(&cluster, "bob", &format!("password={} sslmode=disable", quote(PASSWORD)))).await.unwrap_err();
    assert_eq!(err.startup_failure(), Some(StartupFailure::HbaRejected), "{err}");
    assert!(err.to_string().contains("pg_hba.conf"), "{err}");

    // A missing role: with password methods the server answers like a wrong password (so as not
    // to reveal which roles exist); with trust it says the role does not exist.
    let err = connect(&tcp(&cluster, "nobody", "password=x sslmode=disable")).await.unwrap_err();
    assert_eq!(err.code(), Some("28P01"), "{err}");
    let trust = TestCluster::start_with(major, ClusterOptions::new().auth(Auth::Trust)).unwrap();
    let err = connect(&tcp(&trust, "nobody", "sslmode=disable")).await.unwrap_err();
    assert_eq!(err.startup_failure(), Some(StartupFailure::RoleDoesNotExist), "{err}");
    assert!(err.to_string().contains("role \"nobody\" does not exist"), "{err}");

    // No password at all.
    let err = connect(&tcp(&cluster, "alice", "sslmode=disable passfile=/nonexistent")).await.unwrap_err();
    assert!(err.to_string().contains("no password was supplied"), "{err}");

    // Nothing listening.
    let err = connect("host=127.0.0.1 port=1 user=x sslmode=disable connect_timeout=2").await.unwrap_err();
    assert!(err.to_string().contains("failed during connect"), "{err}");
});

per_major!(async fn query_results_notices_and_typed_replies(major) {
    let cluster = TestCluster::start(major).unwrap();
    let mut client = connect(&tcp(&cluster, "postgres", "sslmode=disable")).await.unwrap();
    // Several statements: every result set and tag, and a notice in between (which must not
    // be taken for a protocol violation).
    let all = client
        .query("select 1 as a; do $$ begin raise notice 'between'; end $$; select 'x' as b, null as c")
        .await
        .unwrap();
    assert_eq!(all.sets.len(), 2);
    assert_eq!(all.tags, ["SELECT 1", "DO", "SELECT 1"]);
    assert_eq!(all.notices.len(), 1);
    assert_eq!(all.notices[0].message, "between");
    assert_eq!(all.sets[1].rows[0].get_by_name("b").unwrap(), Some("x"));
    // simple_query: the last result set.
    let rows = client.simple_query("select 1; select 2 union all select 3").await.unwrap();
    assert_eq!(rows.iter().map(|r| r.get(0).unwrap()).collect::<Vec<_>>(), ["2", "3"]);
    // query_one refuses zero or several result sets, and the session stays usable.
    let err = client.query_one("select 1; select 2").await.unwrap_err();
    assert!(err.to_string().contains("select: expected one result set, got 2"), "{err}");
    let err = client.query_one("set work_mem = '8MB'").await.unwrap_err();
    assert!(err.to_string().contains("expected one result set, got 0"), "{err}");
    assert_eq!(one(&mut client, "show work_mem").await, "8MB");
    client.close().await.unwrap();

    // Replication commands through pg_wire's typed readers.
    let mut repl = connect(&tcp(&cluster, "postgres", "sslmode=disable replication=true")).await.unwrap();
    let id = pg_wire::replication::IdentifySystem::from_result(&repl.query_one("IDENTIFY_SYSTEM").await.unwrap())
        .unwrap();
    let sysid = cluster.sql("select system_identifier from pg_control_system()").unwrap();
    assert_eq!((id.systemid.to_string(), id.timeline, id.dbname), (sysid, 1, None));
    let show =
        pg_wire::replication::Show::from_result(&repl.query_one("SHOW wal_segment_size").await.unwrap()).unwrap();
    assert_eq!(show.size_bytes(), Some(16 << 20));
    repl.close().await.unwrap();
});

per_major!(async fn cancel_a_running_query(major) {
    let cluster = TestCluster::start(major).unwrap();
    let mut client = connect(&tcp(&cluster, "postgres", "sslmode=disable")).await.unwrap();
    let token = client.cancel_token().unwrap();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        token.cancel().await
    });
    let err = client.simple_query("select pg_sleep(30)").await.unwrap_err();
    assert_eq!(err.code(), Some("57014"), "{err}");
    canceller.await.unwrap().unwrap();
    assert_eq!(one(&mut client, "select 42").await, "42");
});

/// A revocation list cannot be honoured yet, so it must not be silently ignored.
#[tokio::test]
async fn a_crl_is_refused_not_ignored() {
    let err = connect("host=127.0.0.1 port=1 user=x sslmode=require sslcrl=/nonexistent/root.crl")
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unsupported(_)), "{err:?}");
    assert!(err.to_string().contains("sslcrl /nonexistent/root.crl"), "{err}");
}
