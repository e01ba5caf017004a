//! Finding the PostgreSQL client tools and their majors.
//!
//! Several client majors may be installed side by side (Debian's `/usr/lib/postgresql/<N>/bin`,
//! RHEL's `/usr/pgsql-<N>/bin`, Homebrew's `postgresql@<N>`, `$PATH`). `pg_dump` must be at least
//! as new as the server it dumps, and `pg_restore` must read the archive it is given; each
//! directory is asked for its version (`pg_dump --version`), and a choice is made before any
//! record is emitted or any restore starts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::LogicalError;

/// Where to look for client tool directories when `pg_bin_dir` is not set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSearch {
    dirs: Vec<PathBuf>,
    path_var: bool,
}

impl ToolSearch {
    /// The usual install locations, then `$PATH`.
    pub fn system() -> Self {
        let mut dirs = Vec::new();
        for pattern_dir in ["/usr/lib/postgresql", "/usr/local/opt", "/opt/homebrew/opt"] {
            let Ok(entries) = std::fs::read_dir(pattern_dir) else { continue };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                    pattern_dir == "/usr/lib/postgresql" || name.starts_with("postgresql@")
                })
                .map(|p| p.join("bin"))
                .collect();
            found.sort();
            dirs.extend(found);
        }
        if let Ok(entries) = std::fs::read_dir("/usr") {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("pgsql-")))
                .map(|p| p.join("bin"))
                .collect();
            found.sort();
            dirs.extend(found);
        }
        dirs.push(PathBuf::from("/usr/local/pgsql/bin"));
        Self { dirs, path_var: true }
    }

    /// Exactly these directories (tests, or a packaging that ships its own tools).
    pub fn dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { dirs: dirs.into_iter().collect(), path_var: false }
    }

    fn candidates(&self) -> Vec<PathBuf> {
        let mut out = self.dirs.clone();
        if self.path_var
            && let Some(path) = std::env::var_os("PATH")
        {
            out.extend(std::env::split_paths(&path));
        }
        out
    }
}

/// One directory of client tools of one major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSet {
    /// The directory.
    pub dir: PathBuf,
    /// The major version (`18`).
    pub major: u32,
    /// The full version line (`pg_dump (PostgreSQL) 18.1`).
    pub version: String,
}

impl ToolSet {
    /// The path of tool `name` in this set.
    pub fn tool(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Parses the major out of a `--version` line (`pg_dump (PostgreSQL) 17.2 (Debian …)`).
pub fn parse_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1).unwrap_or(version_line);
    let number = after.split_whitespace().next()?;
    let major: u32 = number.split(['.', 'b', 'r', 'd']).next()?.parse().ok()?;
    (major >= 10).then_some(major).or_else(|| number.starts_with("9.").then_some(9))
}

async fn probe(dir: &Path, tools: &[&str]) -> Option<ToolSet> {
    if !tools.iter().all(|t| dir.join(t).is_file()) {
        return None;
    }
    let pg_dump = dir.join(tools[0]);
    // Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version on its own: skip it.
    if std::fs::canonicalize(&pg_dump).ok()?.file_name()? == "pg_wrapper" {
        return None;
    }
    let mut cmd = tokio::process::Command::new(&pg_dump);
    cmd.arg("--version").stdin(std::process::Stdio::null()).kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(10), cmd.output()).await.ok()?.ok()?;
    let line = String::from_utf8_lossy(&out.stdout).lines().next()?.trim().to_owned();
    let major = parse_major(&line)?;
    Some(ToolSet { dir: dir.to_owned(), major, version: line })
}

/// Every tool set found (each directory holding all of `tools`), newest major first, one per
/// major (the first found).
pub async fn discover(search: &ToolSearch, tools: &[&str]) -> Vec<ToolSet> {
    let mut sets: Vec<ToolSet> = Vec::new();
    for dir in search.candidates() {
        if let Some(set) = probe(&dir, tools).await
            && !sets.iter().any(|s| s.major == set.major)
        {
            sets.push(set);
        }
    }
    sets.sort_by_key(|s| std::cmp::Reverse(s.major));
    sets
}

/// Which installed major to prefer among those new enough.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prefer {
    /// The oldest major that is at least the server's (a dump made with the server's own
    /// major restores with the most tool versions).
    Closest,
    /// The newest (it reads every older archive).
    Newest,
}

/// Chooses the tools for a server of `server_major`: `pg_bin_dir` when set (it must be new
/// enough), else an installed set at least as new as the server.
pub async fn choose(
    pg_bin_dir: Option<&Path>,
    search: &ToolSearch,
    tools: &[&str],
    server_major: u32,
    prefer: Prefer,
) -> Result<ToolSet, LogicalError> {
    if let Some(dir) = pg_bin_dir {
        let set = probe(dir, tools).await.ok_or_else(|| {
            LogicalError::Tools(format!(
                "pg_bin_dir {}: does not hold a working {} (all of {} are needed)",
                dir.display(),
                tools[0],
                tools.join(", ")
            ))
        })?;
        if set.major < server_major {
            return Err(LogicalError::Tools(format!(
                "pg_bin_dir {}: the client tools are PostgreSQL {} ({}), older than the server (PostgreSQL {server_major}); \
                 use tools of major {server_major} or newer",
                dir.display(),
                set.major,
                set.version
            )));
        }
        return Ok(set);
    }
    let sets = discover(search, tools).await;
    let mut ok: Vec<&ToolSet> = sets.iter().filter(|s| s.major >= server_major).collect();
    if prefer == Prefer::Closest {
        ok.reverse();
    }
    match ok.first() {
        Some(set) => Ok((*set).clone()),
        None => {
            let found = if sets.is_empty() {
                "none found".to_owned()
            } else {
                sets.iter()
                    .map(|s| format!("{} in {}", s.major, s.dir.display()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Err(LogicalError::Tools(format!(
                "no PostgreSQL client tools of major {server_major} or newer (the server's) are installed \
                 (installed: {found}); install them or set pg_bin_dir"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors() {
        assert_eq!(parse_major("pg_dump (PostgreSQL) 18.1"), Some(18));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta2"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("nonsense"), None);
    }
}
