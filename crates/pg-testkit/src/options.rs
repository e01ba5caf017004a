//! What a test asks of its cluster.

use std::fmt;

use crate::paths::ServerSource;

/// A `pg_hba.conf` authentication method
/// (<https://www.postgresql.org/docs/current/auth-pg-hba-conf.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Auth {
    /// No password.
    #[default]
    Trust,
    /// Cleartext password.
    Password,
    /// MD5 challenge (users are created with `password_encryption = md5`).
    Md5,
    /// SCRAM-SHA-256 (users are created with `password_encryption = scram-sha-256`).
    ScramSha256,
    /// TLS client certificate whose CN is the user name (TCP only; needs TLS).
    Cert,
}

impl Auth {
    /// The method's name in `pg_hba.conf`.
    pub fn hba_name(self) -> &'static str {
        match self {
            Auth::Trust => "trust",
            Auth::Password => "password",
            Auth::Md5 => "md5",
            Auth::ScramSha256 => "scram-sha-256",
            Auth::Cert => "cert",
        }
    }
}

/// Whether the server offers TLS and which TCP connections `pg_hba.conf` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Tls {
    /// `ssl = off`; `host` lines (plain TCP only).
    #[default]
    Off,
    /// `ssl = on`; `host` lines: TLS and plain TCP both accepted.
    On,
    /// `ssl = on`; `hostssl` lines only: plain TCP connections are rejected.
    Only,
    /// `ssl = on` but `hostnossl` lines only: the server negotiates TLS, then rejects it.
    RejectTls,
}

impl Tls {
    /// Whether the server has `ssl = on`.
    pub fn enabled(self) -> bool {
        self != Tls::Off
    }

    fn hba_type(self) -> &'static str {
        match self {
            Tls::Off | Tls::On => "host",
            Tls::Only => "hostssl",
            Tls::RejectTls => "hostnossl",
        }
    }
}

/// A role the harness creates after start (`CREATE ROLE`).
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub(crate) name: String,
    pub(crate) password: Option<String>,
    pub(crate) superuser: bool,
    pub(crate) replication: bool,
    pub(crate) login: bool,
}

impl User {
    /// A login role with no password and no special attributes.
    pub fn new(name: impl Into<String>) -> Self {
        User { name: name.into(), password: None, superuser: false, replication: false, login: true }
    }
    /// Sets its password (stored with the encryption the TCP auth method needs).
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }
    /// Makes it a superuser.
    pub fn superuser(mut self) -> Self {
        self.superuser = true;
        self
    }
    /// Gives it the REPLICATION attribute.
    pub fn replication(mut self) -> Self {
        self.replication = true;
        self
    }
    /// Makes it NOLOGIN.
    pub fn no_login(mut self) -> Self {
        self.login = false;
        self
    }
    /// The role name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("superuser", &self.superuser)
            .field("replication", &self.replication)
            .field("login", &self.login)
            .finish()
    }
}

/// Options of a [`crate::TestCluster`]; a builder (every method takes and returns `self`).
#[derive(Debug, Clone, Default)]
pub struct ClusterOptions {
    pub(crate) tcp_auth: Auth,
    pub(crate) socket_auth: Auth,
    pub(crate) tls: Tls,
    pub(crate) users: Vec<User>,
    pub(crate) replication_in_hba: bool,
    pub(crate) extra_hba: Vec<String>,
    pub(crate) checksums: bool,
    pub(crate) wal_segsize_mb: Option<u32>,
    pub(crate) wal_keep_size_mb: Option<u32>,
    pub(crate) max_wal_size_mb: Option<u32>,
    pub(crate) tablespaces: Vec<String>,
    pub(crate) conf: Vec<String>,
    pub(crate) server_source: ServerSource,
    pub(crate) fresh_initdb: bool,
    pub(crate) keep_data_dir: bool,
}

impl ClusterOptions {
    /// Defaults: trust everywhere, no TLS, replication allowed, no checksums.
    pub fn new() -> Self {
        ClusterOptions { replication_in_hba: true, ..Default::default() }
    }
    /// Authentication method for TCP connections (users other than the harness's own).
    pub fn tcp_auth(mut self, auth: Auth) -> Self {
        self.tcp_auth = auth;
        self
    }
    /// Authentication method for Unix-socket connections of users other than `postgres`.
    pub fn socket_auth(mut self, auth: Auth) -> Self {
        self.socket_auth = auth;
        self
    }
    /// Same authentication method for TCP and Unix-socket connections (`Cert`: socket is trust).
    pub fn auth(self, auth: Auth) -> Self {
        let socket = if auth == Auth::Cert { Auth::Trust } else { auth };
        self.tcp_auth(auth).socket_auth(socket)
    }
    /// TLS mode (generates a CA, a server certificate and client certificates).
    pub fn tls(mut self, tls: Tls) -> Self {
        self.tls = tls;
        self
    }
    /// Adds a role to create after start.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }
    /// Whether `pg_hba.conf` gets `replication` lines (default yes).
    pub fn replication_in_hba(mut self, allowed: bool) -> Self {
        self.replication_in_hba = allowed;
        self
    }
    /// A raw `pg_hba.conf` line placed after the harness's own `postgres` lines and before the
    /// generated ones (first match wins).
    pub fn hba_line(mut self, line: impl Into<String>) -> Self {
        self.extra_hba.push(line.into());
        self
    }
    /// Data checksums on (`initdb -k`) or off (`--no-data-checksums` on 18, nothing before).
    pub fn checksums(mut self, on: bool) -> Self {
        self.checksums = on;
        self
    }
    /// WAL segment size in MiB (`initdb --wal-segsize`; a power of two, 1-1024).
    pub fn wal_segsize_mb(mut self, mb: u32) -> Self {
        self.wal_segsize_mb = Some(mb);
        self
    }
    /// `wal_keep_size` in MiB (`wal_keep_segments` on PostgreSQL 12).
    pub fn wal_keep_size_mb(mut self, mb: u32) -> Self {
        self.wal_keep_size_mb = Some(mb);
        self
    }
    /// `max_wal_size` in MiB.
    pub fn max_wal_size_mb(mut self, mb: u32) -> Self {
        self.max_wal_size_mb = Some(mb);
        self
    }
    /// A tablespace to create after start, in a directory of its own inside the cluster's.
    pub fn tablespace(mut self, name: impl Into<String>) -> Self {
        self.tablespaces.push(name.into());
        self
    }
    /// A raw `postgresql.conf` line (`name = value`), written after the harness's settings.
    pub fn conf(mut self, line: impl Into<String>) -> Self {
        self.conf.push(line.into());
        self
    }
    /// Which server build to run (a full one has lz4/zstd).
    pub fn server_source(mut self, source: ServerSource) -> Self {
        self.server_source = source;
        self
    }
    /// Run a fresh `initdb` instead of copying the cached template (a distinct
    /// `system_identifier`; ~1 s slower).
    pub fn fresh_initdb(mut self, fresh: bool) -> Self {
        self.fresh_initdb = fresh;
        self
    }
    /// For [`crate::TestCluster::start_existing`]: leave the data directory in place on drop
    /// (by default it is removed like every other file of the cluster).
    pub fn keep_data_dir(mut self, keep: bool) -> Self {
        self.keep_data_dir = keep;
        self
    }

    /// Checks that the options can work together.
    pub(crate) fn validate(&self) -> crate::Result<()> {
        if self.tcp_auth == Auth::Cert && !matches!(self.tls, Tls::On | Tls::Only) {
            return Err(crate::Error::Config("cert authentication needs Tls::On or Tls::Only".into()));
        }
        if self.socket_auth == Auth::Cert {
            return Err(crate::Error::Config("cert authentication is for TCP only".into()));
        }
        if let Some(mb) = self.wal_segsize_mb
            && (!mb.is_power_of_two() || mb > 1024)
        {
            return Err(crate::Error::Config(format!(
                "wal segment size {mb} MiB: not a power of 2 in 1..=1024"
            )));
        }
        for name in self.users.iter().map(|u| &u.name).chain(&self.tablespaces) {
            if name.is_empty() || name.contains(['\0', '\n', '"', '/']) {
                return Err(crate::Error::Config(format!("unusable role or tablespace name {name:?}")));
            }
        }
        Ok(())
    }

    /// The `pg_hba.conf` contents.
    pub(crate) fn hba(&self) -> String {
        let mut out = String::from(
            "# Written by pg-testkit.\n# The harness's admin channel: postgres over the socket.\n\
             local all postgres trust\nlocal replication postgres trust\n",
        );
        for line in &self.extra_hba {
            out.push_str(line);
            out.push('\n');
        }
        let mut dbs = vec!["all"];
        if self.replication_in_hba {
            dbs.push("replication");
        }
        for db in &dbs {
            out.push_str(&format!("local {db} all {}\n", self.socket_auth.hba_name()));
        }
        for db in &dbs {
            let kind = self.tls.hba_type();
            out.push_str(&format!("{kind} {db} all 127.0.0.1/32 {}\n", self.tcp_auth.hba_name()));
        }
        out
    }

    /// The `password_encryption` the TCP (else socket) method needs.
    pub(crate) fn password_encryption(&self) -> &'static str {
        if self.tcp_auth == Auth::Md5 || (self.tcp_auth != Auth::ScramSha256 && self.socket_auth == Auth::Md5)
        {
            "md5"
        } else {
            "scram-sha-256"
        }
    }

    /// `postgresql.conf` lines for `major` (besides listen address, port and socket directory,
    /// which are passed with `-c`).
    pub(crate) fn conf_lines(&self, major: u32, tls_files: Option<(&str, &str, &str)>) -> Vec<String> {
        let mut lines: Vec<String> =
            ["wal_level = replica", "max_wal_senders = 10", "fsync = off", "synchronous_commit = off"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        lines.push(format!("password_encryption = '{}'", self.password_encryption()));
        if let Some(mb) = self.wal_keep_size_mb {
            if major >= 13 {
                lines.push(format!("wal_keep_size = '{mb}MB'"));
            } else {
                let seg = self.wal_segsize_mb.unwrap_or(16);
                lines.push(format!("wal_keep_segments = {}", mb.div_ceil(seg)));
            }
        }
        if let Some(mb) = self.max_wal_size_mb {
            lines.push(format!("max_wal_size = '{mb}MB'"));
        }
        match tls_files {
            Some((cert, key, ca)) if self.tls.enabled() => {
                lines.push("ssl = on".into());
                lines.push(format!("ssl_cert_file = '{cert}'"));
                lines.push(format!("ssl_key_file = '{key}'"));
                lines.push(format!("ssl_ca_file = '{ca}'"));
            }
            _ => lines.push("ssl = off".into()),
        }
        lines.extend(self.conf.iter().cloned());
        lines
    }

    /// `initdb` arguments that shape the template (part of its cache key).
    pub(crate) fn initdb_args(&self, major: u32) -> Vec<String> {
        let mut args = vec!["--locale=C.UTF-8".to_string(), "-E".into(), "UTF8".into()];
        if self.checksums {
            args.push("-k".into());
        } else if major >= 18 {
            args.push("--no-data-checksums".into());
        }
        if let Some(mb) = self.wal_segsize_mb {
            args.push(format!("--wal-segsize={mb}"));
        }
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hba_puts_admin_lines_first_and_honours_tls_kind() {
        let opts = ClusterOptions::new()
            .auth(Auth::ScramSha256)
            .tls(Tls::Only)
            .hba_line("host all bob 127.0.0.1/32 reject");
        let hba = opts.hba();
        let lines: Vec<&str> = hba.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines[0], "local all postgres trust");
        assert_eq!(lines[1], "local replication postgres trust");
        assert_eq!(lines[2], "host all bob 127.0.0.1/32 reject");
        assert!(lines.contains(&"hostssl all all 127.0.0.1/32 scram-sha-256"));
        assert!(lines.contains(&"hostssl replication all 127.0.0.1/32 scram-sha-256"));
        assert!(lines.contains(&"local replication all scram-sha-256"));
        assert!(!lines[3..].iter().any(|l| l.starts_with("host ")), "{hba}");
    }

    #[test]
    fn no_replication_lines_when_disallowed() {
        let hba = ClusterOptions::new().replication_in_hba(false).hba();
        assert!(!hba.lines().any(|l| l.contains(" replication all")), "{hba}");
    }

    #[test]
    fn wal_keep_is_segments_on_12_and_size_later() {
        let opts = ClusterOptions::new().wal_keep_size_mb(100).wal_segsize_mb(32);
        assert!(opts.conf_lines(12, None).contains(&"wal_keep_segments = 4".to_string()));
        assert!(opts.conf_lines(13, None).contains(&"wal_keep_size = '100MB'".to_string()));
    }

    #[test]
    fn checksum_flags_per_major() {
        assert!(!ClusterOptions::new().initdb_args(17).iter().any(|a| a.contains("checksums")));
        assert!(ClusterOptions::new().initdb_args(18).contains(&"--no-data-checksums".to_string()));
        assert!(ClusterOptions::new().checksums(true).initdb_args(12).contains(&"-k".to_string()));
    }

    #[test]
    fn md5_auth_stores_md5_passwords() {
        assert_eq!(ClusterOptions::new().auth(Auth::Md5).password_encryption(), "md5");
        assert_eq!(ClusterOptions::new().auth(Auth::ScramSha256).password_encryption(), "scram-sha-256");
    }

    #[test]
    fn invalid_combinations_are_rejected() {
        assert!(ClusterOptions::new().tcp_auth(Auth::Cert).validate().is_err());
        assert!(ClusterOptions::new().tcp_auth(Auth::Cert).tls(Tls::Only).validate().is_ok());
        assert!(ClusterOptions::new().wal_segsize_mb(3).validate().is_err());
        assert!(ClusterOptions::new().user(User::new("a\"b")).validate().is_err());
    }

    #[test]
    fn user_debug_redacts_password() {
        let text = format!("{:?}", ClusterOptions::new().user(User::new("alice").password("s3cret-pw")));
        assert!(!text.contains("s3cret-pw"), "{text}");
        assert!(text.contains("<redacted>"), "{text}");
    }
}
