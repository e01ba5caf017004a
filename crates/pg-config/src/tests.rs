//! Table-driven tests of parsing, resolution, redaction and round trips.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;

use crate::*;

/// Every explicit setting as (keyword, value), secrets exposed.
fn settings(cfg: &Config) -> Vec<(&'static str, String)> {
    Param::ALL
        .iter()
        .filter_map(|&p| {
            let v = match p {
                Param::Password => cfg.password().map(|p| p.expose().to_owned()),
                Param::SslPassword => cfg.sslpassword().map(|p| p.expose().to_owned()),
                _ => cfg.get(p).map(str::to_owned),
            };
            v.map(|v| (p.keyword(), v))
        })
        .collect()
}

fn check_table(cases: &[(&str, &[(&str, &str)])]) {
    for (input, expected) in cases {
        let cfg = Config::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        let mut got = settings(&cfg);
        got.sort();
        let mut want: Vec<(&str, String)> = expected.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        want.sort();
        assert_eq!(got, want, "input: {input}");
    }
}

#[test]
fn uri_table() {
    check_table(&[
        ("postgresql://", &[]),
        ("postgres://", &[]),
        ("postgresql://localhost", &[("host", "localhost")]),
        ("postgresql://localhost:5433", &[("host", "localhost"), ("port", "5433")]),
        ("postgresql://localhost/mydb", &[("host", "localhost"), ("dbname", "mydb")]),
        ("postgresql://user@localhost", &[("user", "user"), ("host", "localhost")]),
        (
            "postgresql://user:secret@localhost",
            &[("user", "user"), ("password", "secret"), ("host", "localhost")],
        ),
        (
            "postgresql://other@localhost/otherdb?connect_timeout=10&application_name=myapp",
            &[
                ("user", "other"),
                ("host", "localhost"),
                ("dbname", "otherdb"),
                ("connect_timeout", "10"),
                ("application_name", "myapp"),
            ],
        ),
        (
            "postgresql://host1:123,host2:456/somedb?target_session_attrs=any&application_name=myapp",
            &[
                ("host", "host1,host2"),
                ("port", "123,456"),
                ("dbname", "somedb"),
                ("target_session_attrs", "any"),
                ("application_name", "myapp"),
            ],
        ),
        ("postgresql://[::1]:5432/db", &[("host", "::1"), ("port", "5432"), ("dbname", "db")]),
        ("postgresql://[2001:db8::1234]/database", &[("host", "2001:db8::1234"), ("dbname", "database")]),
        ("postgresql://[::1],[::2]:5433", &[("host", "::1,::2"), ("port", ",5433")]),
        (
            "postgresql:///dbname?host=/var/lib/postgresql",
            &[("host", "/var/lib/postgresql"), ("dbname", "dbname")],
        ),
        (
            "postgresql://%2Fvar%2Flib%2Fpostgresql/dbname",
            &[("host", "/var/lib/postgresql"), ("dbname", "dbname")],
        ),
        ("postgresql:///db?host=/tmp", &[("host", "/tmp"), ("dbname", "db")]),
        ("postgresql:///db?host=%2Ftmp", &[("host", "/tmp"), ("dbname", "db")]),
        // Percent-encoded '@', ':' and '/' in credentials.
        (
            "postgresql://us%40er:p%40ss%3Aw%2Fd@host",
            &[("user", "us@er"), ("password", "p@ss:w/d"), ("host", "host")],
        ),
        // User without password; empty password; password without user; empty user.
        ("postgresql://user@host", &[("user", "user"), ("host", "host")]),
        ("postgresql://user:@host", &[("user", "user"), ("host", "host")]),
        ("postgresql://:pw@host", &[("password", "pw"), ("host", "host")]),
        ("postgresql://@host", &[("host", "host")]),
        ("postgresql://user@", &[("user", "user")]),
        // Repeated keys: the last one wins.
        ("postgresql://host/?sslmode=require&sslmode=disable", &[("host", "host"), ("sslmode", "disable")]),
        ("postgresql://h1/?host=h2", &[("host", "h2")]),
        // JDBC's ssl=true and the old requiressl.
        ("postgresql://host?ssl=true", &[("host", "host"), ("sslmode", "require")]),
        ("postgresql://h?requiressl=1", &[("host", "h"), ("sslmode", "require")]),
        ("postgresql://h?requiressl=0", &[("host", "h"), ("sslmode", "prefer")]),
        // Host lists: libpq keeps an empty port entry per host without a port.
        ("postgresql://h1,h2,h3/db", &[("host", "h1,h2,h3"), ("port", ",,"), ("dbname", "db")]),
        ("postgresql://h1,h2:5433/db", &[("host", "h1,h2"), ("port", ",5433"), ("dbname", "db")]),
        // Empty pieces are not stored (so the environment still applies)...
        ("postgresql://host:/db", &[("host", "host"), ("dbname", "db")]),
        ("postgresql://h/", &[("host", "h")]),
        ("postgresql://h?", &[("host", "h")]),
        // ...but an explicit empty query parameter is.
        ("postgresql://?host=", &[("host", "")]),
        ("postgresql://h/db%20name", &[("host", "h"), ("dbname", "db name")]),
        ("postgresql://h/caf%C3%A9", &[("host", "h"), ("dbname", "café")]),
        ("postgresql://h?options=-c%20search_path%3Dx", &[("host", "h"), ("options", "-c search_path=x")]),
        ("postgresql://h?replication=database", &[("host", "h"), ("replication", "database")]),
        (
            "postgresql://h?replication=on&sslmode=verify-full",
            &[("host", "h"), ("replication", "on"), ("sslmode", "verify-full")],
        ),
        // libpq looks for '@' before the first '/', even past a '?'.
        ("postgresql://h?application_name=a@b", &[("user", "h?application_name=a"), ("host", "b")]),
    ]);
}

#[test]
fn keyword_value_table() {
    check_table(&[
        ("", &[]),
        ("   ", &[]),
        (
            "host=localhost port=5432 dbname=mydb connect_timeout=10",
            &[("host", "localhost"), ("port", "5432"), ("dbname", "mydb"), ("connect_timeout", "10")],
        ),
        ("  host = localhost\tport=\n5432 ", &[("host", "localhost"), ("port", "5432")]),
        // libpq's quoting: backslash escapes inside and outside quotes, no '' doubling.
        (r"password='it\'s \\ quoted'", &[("password", r"it's \ quoted")]),
        (r"password=it\'s\ bare", &[("password", "it's bare")]),
        (r"password='a b'	user=x", &[("password", "a b"), ("user", "x")]),
        (r"password='trailing\\'", &[("password", r"trailing\")]),
        ("dbname='' host=h", &[("dbname", ""), ("host", "h")]),
        ("dbname=", &[("dbname", "")]),
        ("host=a host=b", &[("host", "b")]),
        ("user=bob application_name='my app'", &[("user", "bob"), ("application_name", "my app")]),
        ("host=/tmp", &[("host", "/tmp")]),
        ("host=h1,h2 port=5432,5433", &[("host", "h1,h2"), ("port", "5432,5433")]),
        ("hostaddr=127.0.0.1,::1 host=a,b", &[("hostaddr", "127.0.0.1,::1"), ("host", "a,b")]),
        ("options='-c geqo=off'", &[("options", "-c geqo=off")]),
        ("replication=yes", &[("replication", "yes")]),
        ("replication=1", &[("replication", "1")]),
        ("replication=database", &[("replication", "database")]),
        ("requiressl=0", &[("sslmode", "prefer")]),
        // A bare value may hold '=' and look like a URI: it is a value, nothing else.
        ("dbname=a=b", &[("dbname", "a=b")]),
        ("dbname=postgres://x", &[("dbname", "postgres://x")]),
        ("host=%2Ftmp", &[("host", "%2Ftmp")]),
        (
            "sslmode=verify-ca sslrootcert=/etc/ca.pem sslcert=c sslkey=k sslcrl=r sslsni=0",
            &[
                ("sslmode", "verify-ca"),
                ("sslrootcert", "/etc/ca.pem"),
                ("sslcert", "c"),
                ("sslkey", "k"),
                ("sslcrl", "r"),
                ("sslsni", "0"),
            ],
        ),
        (
            "sslpassword=x channel_binding=require gssencmode=disable",
            &[("sslpassword", "x"), ("channel_binding", "require"), ("gssencmode", "disable")],
        ),
        (
            "keepalives=0 keepalives_idle=30 keepalives_interval=5 keepalives_count=3 tcp_user_timeout=9000",
            &[
                ("keepalives", "0"),
                ("keepalives_idle", "30"),
                ("keepalives_interval", "5"),
                ("keepalives_count", "3"),
                ("tcp_user_timeout", "9000"),
            ],
        ),
        (
            "ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=",
            &[("ssl_min_protocol_version", "TLSv1.3"), ("ssl_max_protocol_version", "")],
        ),
    ]);
}

fn err(input: &str) -> ConfigError {
    Config::parse(input).expect_err(input)
}

#[test]
fn parse_errors_say_what_and_where() {
    let cases: &[(&str, &str)] = &[
        ("host", "missing \"=\" after \"host\" in connection info string (at byte 0)"),
        ("host=a port", "missing \"=\" after \"port\" in connection info string (at byte 7)"),
        (
            "dbname='unterminated",
            "unterminated quoted string in connection info string (quote opened at byte 7)",
        ),
        ("foo=bar", "invalid connection option \"foo\""),
        ("=x", "invalid connection option \"\""),
        ("Host=x", "invalid connection option \"Host\""),
        ("service=foo", "connection option \"service\" is not supported by this client"),
        (
            "sslmode=VERIFY-FULL",
            "invalid value \"VERIFY-FULL\" for connection option \"sslmode\" \
             (expected disable, allow, prefer, require, verify-ca, verify-full)",
        ),
        ("port=0", "invalid port number \"0\" in connection option \"port\" (expected 1 to 65535)"),
        ("port=5432,x", "invalid port number \"x\" in connection option \"port\" (expected 1 to 65535)"),
        (
            "hostaddr=localhost",
            "could not parse network address \"localhost\" in connection option \"hostaddr\"",
        ),
        (
            "connect_timeout=ten",
            "invalid value \"ten\" for connection option \"connect_timeout\" (expected an integer)",
        ),
        ("sslsni=yes", "invalid value \"yes\" for connection option \"sslsni\" (expected 0 or 1)"),
        (
            "replication=maybe",
            "invalid value \"maybe\" for connection option \"replication\" (expected a boolean (true, false, on, off, yes, no, 1, 0) or database)",
        ),
        (
            "channel_binding=on",
            "invalid value \"on\" for connection option \"channel_binding\" (expected disable, prefer, require)",
        ),
        (
            "postgresql://[::1",
            "end of string reached when looking for matching \"]\" in IPv6 host address in URI (opened at byte 13)",
        ),
        ("postgresql://[]", "IPv6 host address may not be empty in URI (at byte 13)"),
        ("postgresql://[::1]x", "unexpected character 'x' at byte 18 in URI (expected \":\" or \"/\")"),
        ("postgresql://h?foo=bar", "invalid URI query parameter: \"foo\""),
        ("postgresql://h?ssl=false", "invalid URI query parameter: \"ssl\""),
        (
            "postgresql://h?sslmode",
            "missing key/value separator \"=\" in URI query parameter: \"sslmode\" (at byte 15)",
        ),
        (
            "postgresql://h?sslmode=require&options=2=3",
            "extra key/value separator \"=\" in URI query parameter \"options\" (at byte 40)",
        ),
        ("postgresql://h/%zz", "invalid percent-encoded token in URI dbname (at byte 15)"),
        ("postgresql://h/a%00b", "forbidden value %00 in percent-encoded value in URI dbname (at byte 15)"),
        ("postgresql://h?service=x", "connection option \"service\" is not supported by this client"),
        (
            "postgresql://h:99999",
            "invalid port number \"99999\" in connection option \"port\" (expected 1 to 65535)",
        ),
        (
            "postgresql://h:abc",
            "invalid port number \"abc\" in connection option \"port\" (expected 1 to 65535)",
        ),
        (
            "postgresql://h?sslmode=bogus",
            "invalid value \"bogus\" for connection option \"sslmode\" (expected disable, allow, prefer, require, verify-ca, verify-full)",
        ),
    ];
    for (input, message) in cases {
        assert_eq!(err(input).to_string(), *message, "input: {input}");
    }
    let long = format!("host={}", "x".repeat(MAX_CONNINFO_LEN));
    assert!(matches!(err(&long), ConfigError::TooLong { .. }));
    assert!(matches!(Config::parse("user=a\\\0b"), Err(ConfigError::NulByte { .. })));
}

#[test]
fn parse_errors_never_show_a_password() {
    // `''` is not an escape in libpq: the rest of the password would show up as a keyword.
    for input in [
        "password='hunter''2' host=x",
        "password='hunter2'x=y",
        "sslpassword='hunter'2",
        "password=hunter\\2 \\hunter2",
        "postgresql://u:hunter2%zz@h",
        "postgresql://u:hunter%2@h",
        "postgresql://u:hunter%002@h",
        "postgresql://u:hunter 2@h",
    ] {
        let e = err(input);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter"), "{input}: {shown}");
        assert!(!shown.contains('2') || shown.contains("byte"), "{input}: {shown}");
    }
    let e = err("password='it''s'");
    assert_eq!(
        e.to_string(),
        "malformed connection info string after the value of \"password\" (at byte 13): check its quoting \
         (inside single quotes, write \\' for a quote and \\\\ for a backslash)"
    );
}

#[test]
fn debug_and_display_never_show_passwords() {
    let cfg = Config::parse("postgresql://alice:Sup3r%20s3cret@db/app?sslpassword=K3yPass&sslmode=require")
        .unwrap();
    assert_eq!(cfg.password().unwrap().expose(), "Sup3r s3cret");
    let env = Env::empty().with_os_user(Some("os"));
    let resolved = cfg.resolve_with(&env).unwrap();
    let shown = [
        format!("{cfg:?}"),
        format!("{cfg:#?}"),
        cfg.to_string(),
        cfg.to_keyword_string_without_password(),
        cfg.redacted_uri(),
        format!("{resolved:?}"),
        format!("{:?}", resolved.targets),
        resolved.targets[0].to_string(),
        format!("{:?}", resolved.startup_params()),
        resolved.to_keyword_string_without_password(),
        format!("{:?}", resolved.passfile_contents()),
    ];
    for s in &shown {
        assert!(!s.contains("s3cret") && !s.contains("Sup3r") && !s.contains("K3yPass"), "{s}");
    }
    assert_eq!(cfg.redacted_uri(), "postgresql://alice:********@db/app?sslmode=require");
    assert!(format!("{cfg:?}").contains("\"password\": <redacted>"), "{cfg:?}");
    assert_eq!(cfg.to_string(), "host=db user=alice dbname=app sslmode=require");
    // The one explicit way out.
    assert!(cfg.to_keyword_string_exposing_password().contains("password='Sup3r s3cret'"));
}

fn env() -> Env {
    Env::empty().with_os_user(Some("osuser"))
}

fn resolve(conninfo: &str, env: &Env) -> ResolvedConfig {
    Config::parse(conninfo).unwrap().resolve_with(env).unwrap_or_else(|e| panic!("{conninfo}: {e}"))
}

fn resolve_err(conninfo: &str, env: &Env) -> ConfigError {
    Config::parse(conninfo).unwrap().resolve_with(env).expect_err(conninfo)
}

#[test]
fn defaults_without_environment() {
    let r = resolve("", &env());
    assert_eq!(r.user, "osuser");
    assert_eq!(r.dbname, "osuser", "dbname defaults to the user");
    assert_eq!(r.targets.len(), 1);
    assert_eq!(r.targets[0].host, HostSpec::Unix { dir: DEFAULT_SOCKET_DIR.into() });
    assert_eq!(r.targets[0].port, 5432);
    assert_eq!(r.targets[0].socket_path(), Some(PathBuf::from("/var/run/postgresql/.s.PGSQL.5432")));
    assert_eq!(r.targets[0].to_string(), "socket \"/var/run/postgresql/.s.PGSQL.5432\"");
    assert_eq!(r.tls.mode, SslMode::Prefer);
    assert_eq!(r.tls.channel_binding, ChannelBinding::Prefer);
    assert_eq!(r.tls.min_version, Some(TlsVersion::Tls1_2));
    assert!(r.tls.sni);
    assert_eq!(r.replication, Replication::Off);
    assert_eq!(r.connect_timeout, None);
    assert!(r.keepalives.enabled);
    assert_eq!(r.target_session_attrs, TargetSessionAttrs::Any);
    assert!(r.password.is_none() && r.passfile.is_none() && r.warnings.is_empty());

    let tcp = Env::empty().with_os_user(Some("u")).with_default_socket_dir(None);
    let r = resolve("", &tcp);
    assert_eq!(r.targets[0].host, HostSpec::Tcp { name: Some("localhost".into()), addr: None });
    assert_eq!(r.targets[0].to_string(), "host \"localhost\", port 5432");

    let nobody = Env::empty();
    assert_eq!(resolve_err("", &nobody), ConfigError::NoUser);
    assert_eq!(resolve("user=x", &nobody).dbname, "x");
}

#[test]
fn precedence_explicit_over_env_over_defaults() {
    let e = env()
        .with_var("PGHOST", "envhost")
        .with_var("PGPORT", "6000")
        .with_var("PGUSER", "envuser")
        .with_var("PGDATABASE", "envdb")
        .with_var("PGSSLMODE", "require")
        .with_var("PGAPPNAME", "envapp")
        .with_var("PGCONNECT_TIMEOUT", "7")
        .with_var("PGOPTIONS", "-c work_mem=1MB")
        .with_var("PGTARGETSESSIONATTRS", "read-write")
        .with_var("PGCHANNELBINDING", "require")
        .with_var("PGSSLSNI", "0");
    let r = resolve("", &e);
    assert_eq!(r.targets[0].host, HostSpec::Tcp { name: Some("envhost".into()), addr: None });
    assert_eq!(r.targets[0].port, 6000);
    assert_eq!((r.user.as_str(), r.dbname.as_str()), ("envuser", "envdb"));
    assert_eq!(r.tls.mode, SslMode::Require);
    assert_eq!(r.application_name.as_deref(), Some("envapp"));
    assert_eq!(r.connect_timeout, Some(Duration::from_secs(7)));
    assert_eq!(r.options.as_deref(), Some("-c work_mem=1MB"));
    assert_eq!(r.target_session_attrs, TargetSessionAttrs::ReadWrite);
    assert_eq!(r.tls.channel_binding, ChannelBinding::Require);
    assert!(!r.tls.sni);

    let r = resolve("host=h port=1 user=u dbname=d sslmode=disable application_name=a connect_timeout=0", &e);
    assert_eq!(r.targets[0].host, HostSpec::Tcp { name: Some("h".into()), addr: None });
    assert_eq!(r.targets[0].port, 1);
    assert_eq!((r.user.as_str(), r.dbname.as_str()), ("u", "d"));
    assert_eq!(r.tls.mode, SslMode::Disable);
    assert_eq!(r.application_name.as_deref(), Some("a"));
    assert_eq!(r.connect_timeout, None, "0 means wait forever");

    // An explicit empty value ignores the environment and takes the built-in default.
    let r = resolve("host='' user=''", &e);
    assert_eq!(r.targets[0].host, HostSpec::Unix { dir: DEFAULT_SOCKET_DIR.into() });
    assert_eq!(r.user, "osuser");
    assert_eq!(r.dbname, "envdb");
    // URI parts left empty are not set at all: the environment applies.
    let r = resolve("postgresql:///", &e);
    assert_eq!(r.targets[0].host, HostSpec::Tcp { name: Some("envhost".into()), addr: None });
    assert_eq!(r.dbname, "envdb");

    // Bad values from the environment name the variable.
    let bad = env().with_var("PGSSLMODE", "strict");
    assert_eq!(
        resolve_err("", &bad).to_string(),
        "invalid value \"strict\" for environment variable PGSSLMODE \
         (expected disable, allow, prefer, require, verify-ca, verify-full)"
    );
    assert!(matches!(resolve_err("", &env().with_var("PGPORT", "x")), ConfigError::InvalidPort { .. }));
    // But an explicit value hides a bad variable.
    assert_eq!(resolve("sslmode=allow", &bad).tls.mode, SslMode::Allow);
}

#[test]
fn deprecated_requiressl_and_unsupported_variables() {
    assert_eq!(resolve("", &env().with_var("PGREQUIRESSL", "1")).tls.mode, SslMode::Require);
    assert_eq!(resolve("", &env().with_var("PGREQUIRESSL", "0")).tls.mode, SslMode::Prefer);
    let both = env().with_var("PGREQUIRESSL", "1").with_var("PGSSLMODE", "disable");
    assert_eq!(resolve("", &both).tls.mode, SslMode::Disable);
    let r = resolve("", &env().with_var("PGSERVICE", "x"));
    assert_eq!(r.warnings, vec![Warning::IgnoredEnvVar { name: "PGSERVICE".into() }]);
    assert_eq!(
        r.warnings[0].to_string(),
        "environment variable PGSERVICE is set but not supported by this client: ignored"
    );
}

#[test]
fn hosts_ports_and_hostaddrs() {
    let r = resolve("host=a,/tmp,@abstract, port=1,2,3,4", &env());
    let hosts: Vec<_> = r.targets.iter().map(|t| (t.host.clone(), t.port)).collect();
    assert_eq!(
        hosts,
        vec![
            (HostSpec::Tcp { name: Some("a".into()), addr: None }, 1),
            (HostSpec::Unix { dir: "/tmp".into() }, 2),
            (HostSpec::Unix { dir: "@abstract".into() }, 3),
            (HostSpec::Unix { dir: DEFAULT_SOCKET_DIR.into() }, 4),
        ]
    );
    assert_eq!(r.targets[1].socket_path(), Some(PathBuf::from("/tmp/.s.PGSQL.2")));

    // One port for all hosts; empty entries are the default port.
    let r = resolve("host=a,b,c port=7", &env());
    assert!(r.targets.iter().all(|t| t.port == 7));
    let r = resolve("postgresql://a,b:9", &env());
    assert_eq!(r.targets.iter().map(|t| t.port).collect::<Vec<_>>(), vec![5432, 9]);
    assert_eq!(
        resolve_err("host=a,b,c port=1,2", &env()).to_string(),
        "could not match 2 port numbers to 3 hosts"
    );

    let r = resolve("hostaddr=10.0.0.1,::1 host=db1,", &env());
    assert_eq!(
        r.targets[0].host,
        HostSpec::Tcp { name: Some("db1".into()), addr: Some("10.0.0.1".parse().unwrap()) }
    );
    assert_eq!(r.targets[1].host, HostSpec::Tcp { name: None, addr: Some("::1".parse().unwrap()) });
    assert_eq!(r.targets[0].tls_server_name(), Some("db1"));
    assert_eq!(r.targets[1].tls_server_name(), None);
    assert_eq!(r.targets[0].to_string(), "host \"db1\" (10.0.0.1), port 5432");
    assert_eq!(
        resolve_err("hostaddr=10.0.0.1,10.0.0.2 host=a,b,c", &env()).to_string(),
        "could not match 3 host names to 2 hostaddr values"
    );
}

#[test]
fn tls_validation() {
    assert_eq!(
        resolve_err("hostaddr=10.0.0.1 sslmode=verify-full", &env()).to_string(),
        "sslmode=verify-full needs a host name to check the certificate against, but target 0 has only \
         hostaddr \"10.0.0.1\": set host as well"
    );
    assert_eq!(
        resolve("hostaddr=10.0.0.1 host=db sslmode=verify-full", &env()).tls.mode,
        SslMode::VerifyFull
    );
    assert_eq!(resolve("hostaddr=10.0.0.1 sslmode=verify-ca", &env()).tls.mode, SslMode::VerifyCa);

    let r = resolve("sslrootcert=system", &env());
    assert_eq!((r.tls.mode, r.tls.root_cert), (SslMode::VerifyFull, Some(RootCert::System)));
    assert!(matches!(
        resolve_err("sslrootcert=system sslmode=require", &env()),
        ConfigError::WeakSslModeForSystemRoots { mode: SslMode::Require }
    ));
    assert!(matches!(
        resolve_err("sslnegotiation=direct", &env()),
        ConfigError::WeakSslModeForDirect { mode: SslMode::Prefer }
    ));
    assert_eq!(
        resolve("sslnegotiation=direct sslmode=require", &env()).tls.negotiation,
        SslNegotiation::Direct
    );
    assert_eq!(
        resolve_err("ssl_min_protocol_version=TLSv1.3 ssl_max_protocol_version=TLSv1.2", &env()).to_string(),
        "invalid SSL protocol version range: TLSv1.3 to TLSv1.2"
    );
    assert_eq!(resolve("ssl_min_protocol_version=''", &env()).tls.min_version, None);
    assert!(matches!(resolve_err("gssencmode=require", &env()), ConfigError::UnsupportedOption { .. }));

    let r = resolve("sslcert=~/c.pem sslkey=/k.pem sslpassword=pp", &env().with_home(Some("/home/x".into())));
    assert_eq!(r.tls.cert, Some(PathBuf::from("/home/x/c.pem")));
    assert_eq!(r.tls.key, Some(PathBuf::from("/k.pem")));
    assert_eq!(r.tls.key_password.as_ref().map(Password::expose), Some("pp"));
}

#[test]
fn default_client_files_only_when_present() {
    let home = tempfile::tempdir().unwrap();
    let e = env().with_home(Some(home.path().to_owned()));
    let r = resolve("", &e);
    assert_eq!((r.tls.cert, r.tls.key, r.tls.root_cert, r.tls.crl), (None, None, None, None));

    let dir = home.path().join(".postgresql");
    std::fs::create_dir(&dir).unwrap();
    for f in ["postgresql.crt", "postgresql.key", "root.crt", "root.crl"] {
        std::fs::write(dir.join(f), "x").unwrap();
    }
    let r = resolve("", &e);
    assert_eq!(r.tls.cert, Some(dir.join("postgresql.crt")));
    assert_eq!(r.tls.key, Some(dir.join("postgresql.key")));
    assert_eq!(r.tls.root_cert, Some(RootCert::File(dir.join("root.crt"))));
    assert_eq!(r.tls.crl, Some(dir.join("root.crl")));
    // Explicit settings win.
    let r = resolve("sslrootcert=/etc/ca.pem", &e);
    assert_eq!(r.tls.root_cert, Some(RootCert::File("/etc/ca.pem".into())));
}

fn write_passfile(dir: &Path, body: &str, mode: u32) -> PathBuf {
    let path = dir.join(".pgpass");
    std::fs::write(&path, body).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn passfile_lookup_during_resolution() {
    let home = tempfile::tempdir().unwrap();
    let body = "\
# host:port:database:user:password
localhost:5432:*:alice:via-localhost
/tmp:5433:*:alice:via-socket-dir
10.0.0.1:5432:*:alice:via-hostaddr
db\\:weird:*:*:alice:escaped
db1:*:app:*:db1-app
*:*:*:bob:bob-anywhere
";
    let path = write_passfile(home.path(), body, 0o600);
    let e = env().with_home(Some(home.path().to_owned()));
    let pw = |conninfo: &str| -> Option<String> {
        let r = resolve(conninfo, &e);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        r.targets[0].password().map(|p| p.expose().to_owned())
    };
    // The default socket directory counts as localhost.
    assert_eq!(pw("user=alice").as_deref(), Some("via-localhost"));
    assert_eq!(pw("user=alice host=localhost").as_deref(), Some("via-localhost"));
    assert_eq!(pw("user=alice host=/tmp port=5433").as_deref(), Some("via-socket-dir"));
    assert_eq!(pw("user=alice host=/tmp"), None);
    assert_eq!(pw("user=alice hostaddr=10.0.0.1").as_deref(), Some("via-hostaddr"));
    assert_eq!(pw("user=alice host=db:weird").as_deref(), Some("escaped"));
    assert_eq!(pw("user=alice host=db1 dbname=app").as_deref(), Some("db1-app"));
    assert_eq!(pw("user=alice host=db1 dbname=other"), None);
    assert_eq!(pw("user=bob host=anything").as_deref(), Some("bob-anywhere"));
    // An explicit password wins; an empty one does not count.
    assert_eq!(pw("user=bob password=given").as_deref(), Some("given"));
    assert_eq!(pw("user=bob password=''").as_deref(), Some("bob-anywhere"));
    assert_eq!(resolve("user=bob", &e).passfile, Some(path.clone()));

    // Per-target lookup for host lists.
    let r = resolve("user=alice host=localhost,db1 dbname=app", &e);
    let pws: Vec<_> = r.targets.iter().map(|t| t.password().map(|p| p.expose().to_owned())).collect();
    assert_eq!(pws, vec![Some("via-localhost".into()), Some("db1-app".into())]);

    // passfile keyword and PGPASSFILE, with ~ expansion.
    let other = home.path().join("other");
    std::fs::write(&other, "*:*:*:*:from-other\n").unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(pw("user=alice passfile=~/other").as_deref(), Some("from-other"));
    let via_env = e.clone().with_var("PGPASSFILE", other.to_str().unwrap());
    assert_eq!(resolve("user=alice", &via_env).targets[0].password().unwrap().expose(), "from-other");
    assert_eq!(
        resolve("user=alice", &e.clone().with_var("PGPASSWORD", "env-pw")).targets[0]
            .password()
            .unwrap()
            .expose(),
        "env-pw"
    );

    // Group- or world-readable: ignored, with a warning for the caller.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let r = resolve("user=alice", &e);
    assert!(r.targets[0].password().is_none());
    assert_eq!(r.warnings, vec![Warning::PassfileInsecure { path, mode: 0o644 }]);
}

#[test]
fn startup_parameters() {
    let r =
        resolve("user=u dbname=d replication=database options='-c x=y' fallback_application_name=fb", &env());
    assert_eq!(
        r.startup_params(),
        vec![
            ("user", "u".to_owned()),
            ("database", "d".to_owned()),
            ("replication", "database".to_owned()),
            ("options", "-c x=y".to_owned()),
            ("application_name", "fb".to_owned()),
        ]
    );
    let r =
        resolve("user=u application_name=app fallback_application_name=fb replication=on password=p", &env());
    assert_eq!(
        r.startup_params(),
        vec![
            ("user", "u".to_owned()),
            ("database", "u".to_owned()),
            ("replication", "true".to_owned()),
            ("application_name", "app".to_owned()),
        ]
    );
    let r =
        resolve("user=u replication=off", &env().with_var("PGTZ", "UTC").with_var("PGDATESTYLE", "default"));
    assert_eq!(
        r.startup_params(),
        vec![("user", "u".to_owned()), ("database", "u".to_owned()), ("timezone", "UTC".to_owned()),]
    );
}

#[test]
fn connect_timeout_and_keepalives() {
    let t = |s: &str| resolve(&format!("connect_timeout={s}"), &env()).connect_timeout;
    assert_eq!(t("1"), Some(Duration::from_secs(2)), "libpq enforces 2 s at least");
    assert_eq!(t(" 30 "), Some(Duration::from_secs(30)));
    assert_eq!(t("0"), None);
    assert_eq!(t("-5"), None);
    let k = resolve("keepalives=0 keepalives_idle=30 keepalives_count=4 tcp_user_timeout=1500", &env())
        .keepalives;
    assert_eq!(
        k,
        Keepalives {
            enabled: false,
            idle: Some(Duration::from_secs(30)),
            interval: None,
            count: Some(4),
            tcp_user_timeout: Some(Duration::from_millis(1500)),
        }
    );
}

#[test]
fn data_derived_database_names_stay_values() {
    for name in ["a=b", "postgres://evil@host/x", "host=evil", "it's \\ odd", " spaced ", "café"] {
        let mut cfg = Config::parse("host=db user=u password=pw").unwrap();
        cfg.set_dbname(name).unwrap();
        assert!(Config::dbname_needs_protection("x=y") && !Config::dbname_needs_protection("x"));
        let r = cfg.resolve_with(&env()).unwrap();
        assert_eq!(r.dbname, name);
        assert_eq!(r.targets[0].host, HostSpec::Tcp { name: Some("db".into()), addr: None });
        // Keyword string: the name comes back as the same single value.
        let s = r.to_keyword_string_without_password();
        assert!(!s.contains("pw"), "{s}");
        let back = Config::parse(&s).unwrap();
        assert_eq!(back.dbname(), Some(name), "{s}");
        assert_eq!(back.get(Param::Host), Some("db"), "{s}");
        // Environment: PGDATABASE carries it verbatim, PGPASSWORD the password.
        let env_vars = r.to_libpq_env();
        assert!(env_vars.contains(&("PGDATABASE", name.to_owned())));
        assert!(env_vars.contains(&("PGPASSWORD", "pw".to_owned())));
        assert!(env_vars.iter().all(|(k, _)| LIBPQ_ENV_VARS.contains(k)));
    }
}

#[test]
fn child_passfile_contents() {
    let mut cfg = Config::parse("host=/tmp,db:1 port=5433,5434 user='we:ird'").unwrap();
    cfg.set_password(Password::new("p:w\\d"));
    let r = cfg.resolve_with(&env()).unwrap();
    let contents = r.passfile_contents().unwrap();
    assert_eq!(
        contents.expose(),
        "/tmp:5433:*:we\\:ird:p\\:w\\\\d\nlocalhost:5433:*:we\\:ird:p\\:w\\\\d\ndb\\:1:5434:*:we\\:ird:p\\:w\\\\d\n"
    );
    // The lines read back through the passfile matcher give the same password.
    let home = tempfile::tempdir().unwrap();
    write_passfile(home.path(), contents.expose(), 0o600);
    let mut no_pw = cfg.clone();
    no_pw.unset(Param::Password);
    let r2 = no_pw.resolve_with(&env().with_home(Some(home.path().to_owned()))).unwrap();
    assert!(r2.targets.iter().all(|t| t.password().map(Password::expose) == Some("p:w\\d")));
    assert!(r2.to_libpq_env().iter().any(|(k, _)| *k == "PGPASSFILE"));
}

// ===== property tests =====

fn text() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        ' ', '\'', '\\', '=', '&', '?', '/', '@', ':', '%', ',', '#', '\t', 'é', '\n',
    ]);
    let ch = prop_oneof![3 => special, 5 => any::<char>().prop_filter("no NUL", |c| *c != '\0')];
    prop::collection::vec(ch, 0..10).prop_map(String::from_iter)
}

fn host_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.-]{1,10}",
        "/[a-z/ ]{0,10}",
        Just("::1".to_owned()),
        Just(String::new()),
        text().prop_map(|t| t.replace(',', "")),
    ]
}

fn list<S: Strategy<Value = String>>(entry: S) -> impl Strategy<Value = String> {
    prop::collection::vec(entry, 1..4).prop_map(|v| v.join(","))
}

fn value_for(p: Param) -> BoxedStrategy<String> {
    let pick =
        |v: &[&str]| prop::sample::select(v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).boxed();
    match p {
        Param::Host => list(host_entry()).boxed(),
        Param::HostAddr => list(pick(&["", "127.0.0.1", "::1", "10.1.2.3"])).boxed(),
        Param::Port => list(prop_oneof![Just(String::new()), (1u16..).prop_map(|p| p.to_string())]).boxed(),
        Param::Replication => pick(&["true", "on", "database", "0", "yes", "OFF"]),
        Param::SslMode => pick(&["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]),
        Param::SslNegotiation => pick(&["postgres", "direct"]),
        Param::ChannelBinding => pick(&["disable", "prefer", "require"]),
        Param::TargetSessionAttrs => pick(&["any", "read-write", "prefer-standby"]),
        Param::GssEncMode => pick(&["disable", "prefer"]),
        Param::SslSni => pick(&["0", "1"]),
        Param::SslMinProtocolVersion | Param::SslMaxProtocolVersion => pick(&["", "TLSv1.2", "tlsv1.3"]),
        Param::ConnectTimeout
        | Param::Keepalives
        | Param::KeepalivesIdle
        | Param::KeepalivesInterval
        | Param::KeepalivesCount
        | Param::TcpUserTimeout => any::<i32>().prop_map(|i| i.to_string()).boxed(),
        _ => text().boxed(),
    }
}

fn config() -> impl Strategy<Value = Config> {
    let params = prop::sample::subsequence(Param::ALL.to_vec(), 0..12);
    params
        .prop_flat_map(|ps| {
            let values: Vec<_> = ps.iter().map(|&p| value_for(p)).collect();
            (Just(ps), values)
        })
        .prop_map(|(ps, values)| {
            let mut cfg = Config::new();
            for (p, v) in ps.into_iter().zip(values) {
                cfg.set(p, v).unwrap();
            }
            cfg
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn keyword_string_round_trips(cfg in config()) {
        let s = cfg.to_keyword_string_exposing_password();
        let back = Config::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(&back, &cfg, "{}", s);
        let mut without = cfg.clone();
        without.unset(Param::Password);
        without.unset(Param::SslPassword);
        prop_assert_eq!(Config::parse(&cfg.to_keyword_string_without_password()).unwrap(), without);
    }

    #[test]
    fn uri_round_trips(cfg in config()) {
        let s = cfg.to_uri_exposing_password();
        let back = Config::parse(&s).map_err(|e| TestCaseError::fail(format!("{s}: {e}")))?;
        prop_assert_eq!(&back, &cfg, "{}", s);
    }

    #[test]
    fn redaction_holds_for_any_password(cfg in config(), pw in "[a-zA-Z0-9]{12}") {
        let mut cfg = cfg;
        cfg.set_password(Password::new(format!("SECRET{pw}")));
        for shown in [format!("{cfg:?}"), cfg.to_string(), cfg.redacted_uri()] {
            prop_assert!(!shown.contains(&format!("SECRET{pw}")), "{}", shown);
        }
    }

    #[test]
    fn parsing_never_panics(s in "(postgres(ql)?://)?\\PC{0,40}") {
        let _ = Config::parse(&s).map(|c| c.resolve_with(&Env::empty().with_os_user(Some("u"))));
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(s in any::<String>()) {
        let _ = Config::parse(&s);
        let _ = Config::parse(&format!("postgresql://{s}"));
    }
}

/// Found by the `conninfo` fuzz target: `port=0864` printed as `:864` in the URI, which reads
/// back as a different configuration (values are kept literally). Port entries are written as
/// they were given; entries the netloc cannot hold as they are (spaces, a sign) go to the query.
#[test]
fn uri_keeps_port_text() {
    for (text, uri) in [
        ("host=localhost port=0864 dbname=db", "postgresql://localhost:0864/db"),
        ("host=a,b port=5432, dbname=db", "postgresql://a:5432,b:/db"),
        ("host=a,b port=' 5432,+5433' dbname=db", "postgresql:///db?host=a%2Cb&port=%205432%2C%2B5433"),
    ] {
        let cfg = Config::parse(text).unwrap();
        assert_eq!(cfg.to_uri_exposing_password(), uri, "{text}");
        assert_eq!(Config::parse(uri).unwrap(), cfg, "{uri}");
        crate::fuzzing::conninfo(text.as_bytes());
    }
}
