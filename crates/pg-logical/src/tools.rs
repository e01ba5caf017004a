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
///
/// [`ToolSearch::system`] looks, in this order (the first directory found for a major wins):
///
/// 1. the absolute entries of `$PATH` (the tools the operator's shell would run; relative
///    entries such as an empty one, meaning the current directory, are skipped);
/// 2. the usual install locations: Debian's `/usr/lib/postgresql/<N>/bin`, Homebrew's
///    `postgresql@<N>` (`/usr/local/opt`, `/opt/homebrew/opt`), RHEL's `/usr/pgsql-<N>/bin`,
///    `/usr/local/pgsql/bin`;
/// 3. the tool sets of `scripts/setup-postgres`: `$PG_PLAKAR_CACHE/tools-<N>/bin` when that
///    variable is set, else `<checkout>/.cache/pg/tools-<N>/bin` when the running program is
///    a build of a checkout of this project (`<checkout>/target/<profile>/<program>`).
///
/// Debian's `/usr/bin/pg_dump` is `pg_wrapper`, which picks a version on its own: skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolSearch {
    dirs: Vec<PathBuf>,
    path_var: bool,
}

/// The `tools-<N>/bin` directories of a `scripts/setup-postgres` cache.
fn setup_postgres_tools(cache: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cache) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("tools-")))
        .map(|p| p.join("bin"))
        .collect();
    found.sort();
    found
}

/// The `scripts/setup-postgres` cache: `$PG_PLAKAR_CACHE`, else the `.cache/pg` of the checkout
/// the running program was built in (`<checkout>/target/<profile>/<program>`).
fn setup_postgres_cache() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_PLAKAR_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().ok()?;
    let checkout = checkout_of(&exe)?;
    checkout.join("scripts/setup-postgres").is_file().then(|| checkout.join(".cache/pg"))
}

/// `<checkout>` of `<checkout>/target/<profile>/<program>`.
fn checkout_of(exe: &Path) -> Option<&Path> {
    let target = exe.parent()?.parent()?;
    (target.file_name()? == "target").then_some(target.parent()?)
}

impl ToolSearch {
    /// `$PATH`, the usual install locations, then `scripts/setup-postgres`'s tool sets (see
    /// [`ToolSearch`]).
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
        if let Some(cache) = setup_postgres_cache() {
            dirs.extend(setup_postgres_tools(&cache));
        }
        Self { dirs, path_var: true }
    }

    /// Exactly these directories (tests, or a packaging that ships its own tools).
    pub fn dirs(dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { dirs: dirs.into_iter().collect(), path_var: false }
    }

    fn candidates(&self) -> Vec<PathBuf> {
        self.candidates_with(std::env::var_os("PATH").as_deref())
    }

    /// `$PATH`'s absolute entries first (when searched), then the directories.
    fn candidates_with(&self, path: Option<&std::ffi::OsStr>) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if self.path_var
            && let Some(path) = path
        {
            out.extend(std::env::split_paths(path).filter(|p| p.is_absolute()));
        }
        out.extend(self.dirs.iter().cloned());
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
    // The environment every child gets (no inherited `PG*` variable, no secret of the caller's).
    crate::child::base_env(&mut cmd);
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
    fn path_first_absolute_entries_only() {
        let search = ToolSearch { dirs: vec![PathBuf::from("/usr/lib/postgresql/15/bin")], path_var: true };
        let path = std::ffi::OsString::from("/opt/pg17/bin::bin:/usr/bin");
        assert_eq!(
            search.candidates_with(Some(&path)),
            ["/opt/pg17/bin", "/usr/bin", "/usr/lib/postgresql/15/bin"].map(PathBuf::from)
        );
        let only = ToolSearch::dirs([PathBuf::from("/x")]);
        assert_eq!(only.candidates_with(Some(&path)), [PathBuf::from("/x")]);
    }

    #[test]
    fn checkout_of_a_build() {
        assert_eq!(checkout_of(Path::new("/src/pg/target/release/pgplakar")), Some(Path::new("/src/pg")));
        assert_eq!(checkout_of(Path::new("/src/pg/target/debug/deps/t-123")), None);
        assert_eq!(checkout_of(Path::new("/usr/bin/pgplakar")), None);
    }

    #[tokio::test]
    async fn the_first_directory_of_a_major_wins() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let mut dirs = Vec::new();
        for (name, version) in [("a", "16.2"), ("b", "16.9"), ("c", "17.1")] {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            for tool in ["pg_restore", "psql"] {
                let f = dir.join(tool);
                std::fs::write(&f, format!("#!/bin/sh\necho '{tool} (PostgreSQL) {version}'\n")).unwrap();
                std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
            dirs.push(dir);
        }
        let sets = discover(&ToolSearch::dirs(dirs.clone()), &["pg_restore", "psql"]).await;
        let got: Vec<(u32, &Path)> = sets.iter().map(|s| (s.major, s.dir.as_path())).collect();
        assert_eq!(got, [(17, dirs[2].as_path()), (16, dirs[0].as_path())]);
    }

    #[tokio::test]
    async fn the_version_probe_inherits_no_variable_of_the_caller() {
        use std::os::unix::fs::PermissionsExt;
        // cargo sets it for a test run: a variable of the caller that is not in INHERITED_VARS.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pg_dump");
        std::fs::write(&f, "#!/bin/sh\n[ -z \"$CARGO_MANIFEST_DIR\" ] && echo 'pg_dump (PostgreSQL) 16.2'\n")
            .unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o755)).unwrap();
        let set = probe(dir.path(), &["pg_dump"]).await.expect("the probe saw a variable of the caller");
        assert_eq!(set.major, 16);
    }

    #[test]
    fn majors() {
        assert_eq!(parse_major("pg_dump (PostgreSQL) 18.1"), Some(18));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 17beta2"), Some(17));
        assert_eq!(parse_major("pg_dump (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("nonsense"), None);
    }
}
