//! Throwaway real PostgreSQL clusters (majors 12-18) for the project's integration tests.
//!
//! Binaries come from the cache filled by `scripts/setup-postgres`; each cluster is a copy of a
//! cached `initdb` template on tmpfs with `postgres` spawned directly (start ~0.2 s, stop
//! ~0.05 s). See `docs/testing.md`.
//!
//! ```no_run
//! use pg_testkit::{Auth, ClusterOptions, TestCluster, Tls, User};
//! let cluster = TestCluster::start_with(
//!     15,
//!     ClusterOptions::new()
//!         .auth(Auth::ScramSha256)
//!         .tls(Tls::On)
//!         .user(User::new("alice").password("secret").replication()),
//! )?;
//! assert_eq!(cluster.sql("select 1")?, "1");
//! # Ok::<(), pg_testkit::Error>(())
//! ```

mod cluster;
#[cfg(feature = "testcontainers")]
mod docker;
mod error;
mod options;
mod paths;
mod procs;
mod tls;

pub use cluster::{ScratchDir, TestCluster, harness_root};
pub use error::{Error, Result};
pub use options::{Auth, ClusterOptions, Tls, User};
pub use paths::{ALL_MAJORS, ServerSource, cache_dir, client_bin, client_bin_for_major, server_bin_dir};
pub use procs::{give_to_server_user, process_alive, processes_using, server_user_ids};

/// Which implementation provides clusters: env `PG_TEST_BACKEND` = `local` (default) or `docker`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// initdb templates on tmpfs and `postgres` run directly (this machine's binaries).
    Local,
    /// A Docker engine through `testcontainers` (feature `testcontainers`).
    #[cfg(feature = "testcontainers")]
    Docker,
}

impl Backend {
    /// The backend selected by `PG_TEST_BACKEND`.
    pub fn from_env() -> Result<Backend> {
        match std::env::var("PG_TEST_BACKEND").as_deref() {
            Err(_) | Ok("") | Ok("local") => Ok(Backend::Local),
            #[cfg(feature = "testcontainers")]
            Ok("docker") => Ok(Backend::Docker),
            #[cfg(not(feature = "testcontainers"))]
            Ok("docker") => Err(Error::Config(
                "PG_TEST_BACKEND=docker needs pg-testkit's `testcontainers` feature".into(),
            )),
            Ok(other) => {
                Err(Error::Config(format!("PG_TEST_BACKEND={other:?}: expected `local` or `docker`")))
            }
        }
    }
}

/// The majors selected by env `PG_VERSIONS` (e.g. `15,18` or `12-14,18`; default all of
/// 12-18), sorted.
///
/// # Panics
/// On an entry that is not a major in 12-18: a typo must not silently select nothing.
pub fn selected_majors() -> Vec<u32> {
    match std::env::var("PG_VERSIONS") {
        Ok(text) if !text.trim().is_empty() && text.trim() != "all" => {
            parse_versions(&text).unwrap_or_else(|e| panic!("PG_VERSIONS={text:?}: {e}"))
        }
        _ => ALL_MAJORS.collect(),
    }
}

fn parse_versions(text: &str) -> std::result::Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in text.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()) {
        let (lo, hi) = item.split_once('-').unwrap_or((item, item));
        let parse = |s: &str| {
            s.trim()
                .parse::<u32>()
                .ok()
                .filter(|m| ALL_MAJORS.contains(m))
                .ok_or_else(|| format!("{s:?} is not a supported PostgreSQL major (12-18)"))
        };
        let (lo, hi) = (parse(lo)?, parse(hi)?);
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// What a `per_major!` test body may return: `()` or a `Result` whose error fails the test.
pub trait MajorOutcome {
    /// Panics on failure.
    fn check(self, major: u32);
}

impl MajorOutcome for () {
    fn check(self, _major: u32) {}
}

impl<E: std::fmt::Debug> MajorOutcome for std::result::Result<(), E> {
    fn check(self, major: u32) {
        if let Err(e) = self {
            panic!("PostgreSQL {major}: {e:?}");
        }
    }
}

/// Whether a `per_major!` test of `major` should run: false (with a printed line) when
/// `PG_VERSIONS` does not select it.
///
/// # Panics
/// When `major` is selected but its server binaries are missing (never a silent skip).
#[doc(hidden)]
pub fn __should_run(major: u32) -> bool {
    if !selected_majors().contains(&major) {
        // A deliberate, visible selection: shown with --nocapture and in failing output.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("PostgreSQL {major} not selected by PG_VERSIONS: test not run");
        }
        return false;
    }
    if Backend::from_env().is_ok_and(|b| b == Backend::Local)
        && let Err(e) = server_bin_dir(major, ServerSource::Embedded)
    {
        panic!("{e}");
    }
    true
}

/// Runs an async test body on a fresh current-thread tokio runtime (for `per_major!(async fn ...)`).
#[doc(hidden)]
pub fn __block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("building a tokio runtime")
        .block_on(future)
}

#[doc(hidden)]
pub mod __private {
    pub use pastey::paste;
}

/// Generates one `#[test]` per major 12-18, named `<name>_pg12` … `<name>_pg18`, each running
/// the body with `$major` bound to its major (a `u32`). The body may return `()` or
/// `Result<(), impl Debug>`. Majors not selected by `PG_VERSIONS` return early with a printed
/// line; a selected major without binaries fails.
///
/// ```ignore
/// pg_testkit::per_major!(fn starts(major) {
///     let cluster = pg_testkit::TestCluster::start(major).unwrap();
///     assert_eq!(cluster.major(), major);
/// });
/// pg_testkit::per_major!(async fn starts_async(major) {
///     let cluster = pg_testkit::TestCluster::start(major).unwrap();
///     assert_eq!(cluster.sql("select 1").unwrap(), "1");
/// });
/// ```
#[macro_export]
macro_rules! per_major {
    ($(#[$attr:meta])* fn $name:ident($major:ident) $body:block) => {
        $crate::per_major!(@all [$(#[$attr])*] $name $major $body);
    };
    ($(#[$attr:meta])* async fn $name:ident($major:ident) $body:block) => {
        $crate::per_major!(@all [$(#[$attr])*] $name $major { $crate::__block_on(async move $body) });
    };
    (@all $attrs:tt $name:ident $major:ident $body:block) => {
        $crate::per_major!(@one 12, $attrs $name $major $body);
        $crate::per_major!(@one 13, $attrs $name $major $body);
        $crate::per_major!(@one 14, $attrs $name $major $body);
        $crate::per_major!(@one 15, $attrs $name $major $body);
        $crate::per_major!(@one 16, $attrs $name $major $body);
        $crate::per_major!(@one 17, $attrs $name $major $body);
        $crate::per_major!(@one 18, $attrs $name $major $body);
    };
    (@one $m:literal, [$(#[$attr:meta])*] $name:ident $major:ident $body:block) => {
        $crate::__private::paste! {
            #[test]
            $(#[$attr])*
            fn [<$name _pg $m>]() {
                if $crate::__should_run($m) {
                    let run = |$major: u32| $body;
                    $crate::MajorOutcome::check(run($m), $m);
                }
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_ranges() {
        assert_eq!(parse_versions("15,18").unwrap(), vec![15, 18]);
        assert_eq!(parse_versions("12-14, 18 18").unwrap(), vec![12, 13, 14, 18]);
        assert!(parse_versions("11").unwrap_err().contains("not a supported"));
        assert!(parse_versions("15,x").is_err());
    }

    #[test]
    fn outcome_of_ok_and_unit_passes() {
        ().check(15);
        Ok::<(), String>(()).check(15);
    }

    #[test]
    #[should_panic(expected = "PostgreSQL 16: \"boom\"")]
    fn outcome_of_err_fails() {
        Err::<(), _>("boom").check(16);
    }
}
