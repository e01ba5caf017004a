//! Helpers shared by the integration tests of this crate.

use std::process::{Command, Stdio};

/// Runs `cmd` to completion; fails the test with its output unless it succeeded. Returns stdout.
pub(crate) fn run(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
