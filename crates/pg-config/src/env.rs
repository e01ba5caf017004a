//! [`Env`]: the environment a configuration is resolved in, injectable for tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The default Unix socket directory, as compiled into Debian's and most Linux distributions'
/// libpq (`DEFAULT_PGSOCKET_DIR`). Upstream source builds use `/tmp`: override it with
/// [`Env::with_default_socket_dir`].
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

/// The default port (`DEF_PGPORT`).
pub const DEFAULT_PORT: u16 = 5432;

/// The host used when there is no default socket directory (`DefaultHost`).
pub const DEFAULT_HOST: &str = "localhost";

/// Everything outside the connection string that resolution reads: environment variables,
/// the home directory, the OS user name and the default socket directory.
///
/// Tests build one with [`Env::empty`] and the `with_*` methods; programs use
/// [`Env::process`]. Nothing here mutates the process environment.
#[derive(Clone, Debug)]
pub struct Env {
    vars: HashMap<String, String>,
    home: Option<PathBuf>,
    os_user: Option<String>,
    default_socket_dir: Option<String>,
    non_utf8_vars: Vec<String>,
}

impl Env {
    /// No variables, no home directory, no OS user; default socket dir [`DEFAULT_SOCKET_DIR`].
    pub fn empty() -> Self {
        Self {
            vars: HashMap::new(),
            home: None,
            os_user: None,
            default_socket_dir: Some(DEFAULT_SOCKET_DIR.to_owned()),
            non_utf8_vars: Vec::new(),
        }
    }

    /// The real environment of this process: every `PG*` variable, the home directory
    /// (`$HOME`, else the password database, as libpq's `pqGetHomeDirectory`) and the name
    /// of the effective user (as libpq's `pg_fe_getauthname`).
    pub fn process() -> Self {
        let mut env = Self::empty();
        for (k, v) in std::env::vars_os() {
            let Some(k) = k.to_str() else { continue };
            if !k.starts_with("PG") {
                continue;
            }
            match v.into_string() {
                Ok(v) => {
                    env.vars.insert(k.to_owned(), v);
                }
                Err(_) => env.non_utf8_vars.push(k.to_owned()),
            }
        }
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid()).ok().flatten();
        env.home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(|| user.as_ref().map(|u| u.dir.clone()));
        env.os_user = user.map(|u| u.name);
        env
    }

    /// Adds (or replaces) a variable.
    pub fn with_var(mut self, name: &str, value: &str) -> Self {
        self.vars.insert(name.to_owned(), value.to_owned());
        self
    }

    /// Sets the home directory (`None`: unknown, no `~/.pgpass`, no `~/.postgresql/`).
    pub fn with_home(mut self, home: Option<PathBuf>) -> Self {
        self.home = home;
        self
    }

    /// Sets the OS user name (the last default for `user`).
    pub fn with_os_user(mut self, user: Option<&str>) -> Self {
        self.os_user = user.map(str::to_owned);
        self
    }

    /// Sets the default socket directory; `None` makes the default host `localhost` over TCP,
    /// as a libpq built without Unix sockets.
    pub fn with_default_socket_dir(mut self, dir: Option<&str>) -> Self {
        self.default_socket_dir = dir.map(str::to_owned);
        self
    }

    /// A variable's value.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The home directory.
    pub fn home(&self) -> Option<&Path> {
        self.home.as_deref()
    }

    /// The OS user name.
    pub fn os_user(&self) -> Option<&str> {
        self.os_user.as_deref()
    }

    /// The default socket directory.
    pub fn default_socket_dir(&self) -> Option<&str> {
        self.default_socket_dir.as_deref()
    }

    /// `PG*` variables that were set but not valid UTF-8 (and therefore ignored).
    pub fn non_utf8_vars(&self) -> &[String] {
        &self.non_utf8_vars
    }

    /// Expands a leading `~/` with the home directory. libpq does not do this; it is done
    /// here for file parameters because a literal directory named `~` is never meant.
    pub fn expand_tilde(&self, path: &str) -> PathBuf {
        match (path.strip_prefix("~/"), &self.home) {
            (Some(rest), Some(home)) => home.join(rest),
            _ if path == "~" => self.home.clone().unwrap_or_else(|| PathBuf::from(path)),
            _ => PathBuf::from(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injected_env() {
        let env =
            Env::empty().with_var("PGHOST", "db").with_home(Some("/home/u".into())).with_os_user(Some("u"));
        assert_eq!(env.var("PGHOST"), Some("db"));
        assert_eq!(env.var("PGPORT"), None);
        assert_eq!(env.os_user(), Some("u"));
        assert_eq!(env.expand_tilde("~/.pgpass"), PathBuf::from("/home/u/.pgpass"));
        assert_eq!(env.expand_tilde("/etc/x"), PathBuf::from("/etc/x"));
        assert_eq!(env.expand_tilde("~"), PathBuf::from("/home/u"));
        assert_eq!(Env::empty().expand_tilde("~/x"), PathBuf::from("~/x"));
        assert_eq!(Env::empty().default_socket_dir(), Some(DEFAULT_SOCKET_DIR));
    }

    #[test]
    fn process_env_reads_the_os_user() {
        let env = Env::process();
        // Whoever runs the tests has a uid; the password database names it on any sane host.
        assert!(env.os_user().is_some_and(|u| !u.is_empty()));
        assert!(env.home().is_some());
    }
}
