//! Supervised child processes and the private files they need.
//!
//! - [`Prepared`] holds the connection hand-off shared by every child of one backup or restore:
//!   the libpq environment (never argv) and a private directory (0700) with the passfile and the
//!   inline PEM files (0600). The directory is removed when the last child and the plan are
//!   dropped, on every path, unwinding panics included.
//! - [`Child`] is one tool run in its own process group, with an explicit environment (nothing
//!   inherited from the caller's `PG*` variables), stdin closed or fed by the caller, stdout
//!   piped to the caller and stderr drained concurrently into a bounded tail. Dropping it kills
//!   the whole group (`pg_dumpall` runs `pg_dump` children through a shell).

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pg_config::{Config, LIBPQ_ENV_VARS, Param};
use tokio::io::AsyncReadExt;
use tokio::task::JoinHandle;

use crate::error::LogicalError;
use crate::options::ConnectionOptions;

/// How much of a child's stderr is kept (its end).
pub(crate) const STDERR_TAIL: usize = 8 * 1024;
/// How many script errors are kept word for word.
const KEPT_ERRORS: usize = 10;
/// Longest stderr line examined for a SQLSTATE.
const MAX_LINE: usize = 4096;

/// Variables a child inherits from this process (everything else, `PG*` included, is dropped).
pub(crate) const INHERITED_VARS: &[&str] =
    &["PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_MESSAGES", "LC_CTYPE", "TZ"];

/// Clears `cmd`'s environment down to [`INHERITED_VARS`]: the environment every child (and
/// the tools' version probe) starts from.
pub(crate) fn base_env(cmd: &mut tokio::process::Command) {
    cmd.env_clear();
    for var in INHERITED_VARS {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
}

/// The connection hand-off shared by the children of one backup or restore.
pub(crate) struct Prepared {
    /// The configuration with inline PEM replaced by file paths; no database.
    pub(crate) config: Config,
    /// libpq variables for children (no password, no database).
    env: Vec<(&'static str, String)>,
    dir: tempfile::TempDir,
}

impl Prepared {
    /// Writes the private files and computes the child environment.
    pub(crate) fn new(opts: &ConnectionOptions) -> Result<Arc<Self>, LogicalError> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::Builder::new()
            .prefix("pg-logical-")
            .tempdir()
            .and_then(|dir| {
                // Nothing is in it yet: make it private before the first secret lands.
                std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
                Ok(dir)
            })
            .map_err(|source| LogicalError::TempFile {
                what: "private temporary directory".into(),
                error: source,
            })?;
        let mut config = opts.config.clone();
        for (param, pem) in &opts.inline_pem {
            let path = dir.path().join(param.keyword());
            write_private(&path, pem.expose().as_bytes()).map_err(|source| LogicalError::TempFile {
                what: format!("{} file", param.keyword()),
                error: source,
            })?;
            config.set(*param, path.to_string_lossy().into_owned()).map_err(|e| LogicalError::Option {
                option: format!("{}_data", param.keyword()),
                message: e.to_string(),
            })?;
        }
        let resolved = config
            .resolve()
            .map_err(|e| LogicalError::Option { option: "location".into(), message: e.to_string() })?;
        for w in &resolved.warnings {
            tracing::warn!("{w}");
        }
        let mut env: Vec<(&'static str, String)> = resolved
            .to_libpq_env()
            .into_iter()
            .filter(|(k, _)| *k != "PGPASSWORD" && *k != "PGDATABASE" && *k != "PGPASSFILE")
            .collect();
        if let Some(contents) = resolved.passfile_contents() {
            let path = dir.path().join("pgpass");
            write_private(&path, contents.expose().as_bytes())
                .map_err(|source| LogicalError::TempFile { what: "password file".into(), error: source })?;
            env.push(("PGPASSFILE", path.to_string_lossy().into_owned()));
        } else if let Some(p) = &resolved.passfile {
            env.push(("PGPASSFILE", p.to_string_lossy().into_owned()));
        }
        Ok(Arc::new(Self { config, env, dir }))
    }

    /// The private directory (for tests: it must be gone afterwards).
    pub(crate) fn private_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration of a native connection to `db` (probes: server version, privileges,
    /// existence); the name is a value, never parsed.
    pub(crate) fn config_for(&self, db: &str) -> Result<Config, LogicalError> {
        let mut config = self.config.clone();
        let _ = config.set(Param::FallbackApplicationName, "pg_plakar");
        config
            .set_dbname(db)
            .map_err(|e| LogicalError::Option { option: "database".into(), message: e.to_string() })?;
        Ok(config)
    }
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(contents)?;
    f.sync_all()
}

/// What a child said on stderr: its tail, and the errors of a `psql` script run with
/// `VERBOSITY=verbose` (`ERROR:  42710: role "x" already exists`), classified by SQLSTATE.
#[derive(Debug, Default)]
pub(crate) struct StderrSummary {
    tail: Vec<u8>,
    /// Script errors whose SQLSTATE is not tolerated, the first few word for word.
    pub(crate) errors: Vec<String>,
    /// How many script errors were not tolerated.
    pub(crate) error_count: u64,
    /// How many were tolerated.
    pub(crate) tolerated: u64,
}

impl StderrSummary {
    /// The tail as text, starting on a character boundary.
    pub(crate) fn tail_text(&self) -> String {
        tail_text(&self.tail)
    }
}

/// Text of a byte tail, without a partial first character.
pub(crate) fn tail_text(tail: &[u8]) -> String {
    let mut start = 0;
    while start < tail.len() && start < 4 && (tail[start] & 0xC0) == 0x80 {
        start += 1;
    }
    String::from_utf8_lossy(&tail[start..]).into_owned()
}

/// The SQLSTATE of a psql verbose error line, if it is one.
pub(crate) fn script_error_sqlstate(line: &str) -> Option<&str> {
    let at = line.find("ERROR:  ")?;
    let rest = &line[at + 8..];
    let code = rest.get(..5)?;
    (code.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()) && rest[5..].starts_with(':'))
        .then_some(code)
}

async fn drain_stderr(
    mut stderr: tokio::process::ChildStderr,
    tolerated_codes: &'static [&'static str],
) -> StderrSummary {
    let mut summary = StderrSummary::default();
    let mut line: Vec<u8> = Vec::new();
    let mut buf = vec![0u8; 8192];
    let on_line = |line: &[u8], summary: &mut StderrSummary| {
        let text = String::from_utf8_lossy(line);
        if let Some(code) = script_error_sqlstate(&text) {
            if tolerated_codes.contains(&code) {
                summary.tolerated += 1;
            } else {
                summary.error_count += 1;
                if summary.errors.len() < KEPT_ERRORS {
                    summary.errors.push(text.trim_end().to_owned());
                }
            }
        }
    };
    loop {
        let n = match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        summary.tail.extend_from_slice(data);
        if summary.tail.len() > STDERR_TAIL {
            let cut = summary.tail.len() - STDERR_TAIL;
            summary.tail.drain(..cut);
        }
        for &b in data {
            if b == b'\n' {
                on_line(&line, &mut summary);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        on_line(&line, &mut summary);
    }
    summary
}

/// How a child is started.
pub(crate) struct Spawn<'a> {
    pub(crate) tool: PathBuf,
    pub(crate) args: Vec<OsString>,
    pub(crate) prepared: &'a Arc<Prepared>,
    /// `PGDATABASE` for the child (a value libpq never expands).
    pub(crate) database: Option<&'a str>,
    /// Whether the caller feeds stdin (else it is closed).
    pub(crate) stdin: bool,
    /// Whether the caller reads stdout (else it goes nowhere).
    pub(crate) stdout: bool,
    /// SQLSTATEs of script errors that are not counted as errors.
    pub(crate) tolerated_codes: &'static [&'static str],
    /// For messages: what the child does.
    pub(crate) what: String,
}

/// A running, supervised child.
pub(crate) struct Child {
    child: tokio::process::Child,
    /// The process group to kill on drop; `None` once the child was reaped.
    pgid: Option<Pid>,
    stderr: Option<JoinHandle<StderrSummary>>,
    pub(crate) what: String,
    _prepared: Arc<Prepared>,
}

impl Child {
    pub(crate) fn spawn(spec: Spawn<'_>) -> Result<Child, LogicalError> {
        let mut cmd = tokio::process::Command::new(&spec.tool);
        cmd.args(&spec.args);
        base_env(&mut cmd);
        debug_assert!(spec.prepared.env.iter().all(|(k, _)| LIBPQ_ENV_VARS.contains(k)));
        cmd.envs(spec.prepared.env.iter().map(|(k, v)| (*k, v.as_str())));
        if let Some(db) = spec.database {
            cmd.env("PGDATABASE", db);
        }
        cmd.stdin(if spec.stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(if spec.stdout { Stdio::piped() } else { Stdio::null() })
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        // The child dies with this process however it dies (a Plakar plugin is SIGKILLed when
        // Plakar exits): the kernel sends it SIGKILL when the spawning thread's process ends.
        let parent = std::process::id() as i32;
        // SAFETY: only async-signal-safe system calls (prctl, getppid, _exit) between fork and
        // exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)?;
                if nix::unistd::getppid().as_raw() != parent {
                    nix::libc::_exit(1);
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| LogicalError::Spawn { tool: spec.tool.display().to_string(), error: source })?;
        let pgid = child.id().map(|id| Pid::from_raw(id as i32));
        let stderr = child.stderr.take().map(|e| tokio::spawn(drain_stderr(e, spec.tolerated_codes)));
        tracing::debug!(tool = %spec.tool.display(), pid = ?pgid, "started {}", spec.what);
        Ok(Child { child, pgid, stderr, what: spec.what, _prepared: spec.prepared.clone() })
    }

    pub(crate) fn take_stdout(&mut self) -> Option<tokio::process::ChildStdout> {
        self.child.stdout.take()
    }

    pub(crate) fn take_stdin(&mut self) -> Option<tokio::process::ChildStdin> {
        self.child.stdin.take()
    }

    /// Kills the whole process group (the child and anything it started).
    pub(crate) fn kill_group(&mut self) {
        if let Some(pgid) = self.pgid {
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }

    /// Waits for the child's exit and for the end of its stderr.
    pub(crate) async fn wait(mut self) -> Result<(ExitStatus, StderrSummary), LogicalError> {
        let status = self.child.wait().await;
        // The leader is reaped: its group id may be reused from now on, never signal it again.
        let pgid = self.pgid.take();
        let status = status.map_err(|source| {
            if let Some(p) = pgid {
                let _ = killpg(p, Signal::SIGKILL);
            }
            LogicalError::Spawn { tool: self.what.clone(), error: source }
        })?;
        let summary = match self.stderr.take() {
            Some(task) => task.await.unwrap_or_default(),
            None => StderrSummary::default(),
        };
        Ok((status, summary))
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGKILL);
            tracing::debug!(pid = pgid.as_raw(), "killed the process group of {}", self.what);
        }
        if let Some(task) = self.stderr.take() {
            task.abort();
        }
    }
}

/// "exit status 1", "killed by signal 9".
pub(crate) fn describe_status(status: &ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstate_of_verbose_psql_lines() {
        assert_eq!(
            script_error_sqlstate("psql:<stdin>:12: ERROR:  42710: role \"postgres\" already exists"),
            Some("42710")
        );
        assert_eq!(script_error_sqlstate("ERROR:  42P01: relation \"x\" does not exist"), Some("42P01"));
        assert_eq!(script_error_sqlstate("psql:<stdin>:3: ERROR:  syntax error at or near"), None);
        assert_eq!(script_error_sqlstate("NOTICE:  hello"), None);
    }

    #[test]
    fn tail_starts_on_a_character() {
        let s = "é".repeat(10);
        let bytes = s.as_bytes();
        assert_eq!(tail_text(&bytes[1..]), "é".repeat(9));
        assert_eq!(tail_text(b"abc"), "abc");
    }
}
