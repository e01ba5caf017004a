//! A test host for Plakar plugins, written from the plugin contract (`plakar-contract.md` §14)
//! and independent of the plugin runtime: it shares only the `.proto` files.
//!
//! It behaves as Plakar (kloset v1.1.3 + integration-grpc v1.1.0) does:
//!
//! - [`transport`]: spawns a plugin binary with piped stdin/stdout, speaks HTTP/2 (prior
//!   knowledge) over them with a connector that refuses to re-dial, checks that every byte the
//!   plugin writes to stdout is an HTTP/2 frame, and ends the plugin by closing its stdin or by
//!   SIGKILL;
//! - [`import`]: the importer driver: `Init`, then `Import` with up to N records in flight,
//!   `Open`s from N workers, acknowledgements in completion order (optionally shuffled and
//!   delayed), acknowledgements without `Open` (cache hits), cancelled `Open`s, and the
//!   per-record validation of §14.B;
//! - [`store`]: snapshots stored in a directory, like Plakar's filesystem store (an index and
//!   content-addressed blobs), with the parents Plakar synthesises;
//! - [`export`]: the exporter driver: `Init`, `Export` in Plakar's walk order (pre-order,
//!   children sorted by name, the selected directory as `/`), 1 MiB chunks and the empty end
//!   chunk; and [`export::write_out`], which writes a snapshot subtree to a directory as Plakar's
//!   `fs` exporter does;
//! - [`procs`]: the plugin's child processes as `/proc` shows them (argv, environment, leftovers).

pub mod export;
pub mod import;
pub mod procs;
pub mod proto;
pub mod store;
pub mod transport;

/// Go `fs.FileMode` bits the host needs.
pub mod mode {
    /// `fs.ModeDir`.
    pub const DIR: u32 = 1 << 31;
    /// `fs.ModeSymlink`.
    pub const SYMLINK: u32 = 1 << 27;
    /// `fs.ModeType`.
    pub const TYPE: u32 = (1 << 31) | (1 << 27) | (1 << 25) | (1 << 24) | (1 << 26) | (1 << 21) | (1 << 19);
    /// Setuid, setgid, sticky.
    pub const SPECIAL: u32 = (1 << 23) | (1 << 22) | (1 << 20);

    /// `mode & ModeType == 0`.
    pub fn is_regular(mode: u32) -> bool {
        mode & TYPE == 0
    }

    /// `mode & ModeDir != 0`.
    pub fn is_dir(mode: u32) -> bool {
        mode & DIR != 0
    }

    /// `mode & ModeSymlink != 0`.
    pub fn is_symlink(mode: u32) -> bool {
        mode & SYMLINK != 0
    }

    /// POSIX permission bits of a Go mode.
    pub fn posix_perm(mode: u32) -> u32 {
        let mut m = mode & 0o777;
        if mode & (1 << 23) != 0 {
            m |= 0o4000;
        }
        if mode & (1 << 22) != 0 {
            m |= 0o2000;
        }
        if mode & (1 << 20) != 0 {
            m |= 0o1000;
        }
        m
    }
}

/// Where cargo put a workspace binary (built by `cargo test --workspace`, or built on demand).
pub fn plugin_binary(name: &str) -> std::path::PathBuf {
    let root =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let path = target.join(profile).join(name);
    static BUILD: std::sync::Once = std::sync::Once::new();
    BUILD.call_once(|| {
        // Make sure the plugin binaries are current (cargo test does not build other packages'
        // binaries for an integration test of this crate).
        let mut cmd = std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root).args(["build", "-q", "-p", "plakar-postgresql"]);
        // Not the variables cargo sets for this test process: build scripts track some of them
        // (ring's reruns on CARGO_MANIFEST_DIR), so passing them on would rebuild ring, rustls
        // and everything above them here, and again at the next ordinary build (~40 s each).
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if key.starts_with("CARGO_PKG_")
                || matches!(
                    key,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_BIN_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                )
            {
                cmd.env_remove(key);
            }
        }
        if profile == "release" {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build for the plugin binaries");
        assert!(status.success(), "building the plugin binaries failed");
    });
    assert!(path.exists(), "{} not built", path.display());
    path
}
