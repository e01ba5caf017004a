//! Measuring one command: wall time, CPU time and peak RSS.
//!
//! `getrusage(RUSAGE_CHILDREN)` reports the largest `ru_maxrss` of all waited-for descendants,
//! so it is only per-command in a process that has exactly one child: the hidden `measure`
//! subcommand is that process (getrusage(2), "RUSAGE_CHILDREN").

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike;
use serde::{Deserialize, Serialize};

/// What the wrapper measured of its child.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct Measured {
    /// Wall time from spawn to exit.
    pub(crate) wall_ns: u64,
    /// Peak resident set size in KiB (`ru_maxrss`).
    pub(crate) max_rss_kib: u64,
    /// User CPU time.
    pub(crate) user_ns: u64,
    /// System CPU time.
    pub(crate) sys_ns: u64,
    /// Exit code (None when killed by a signal).
    pub(crate) exit: Option<i32>,
}

/// The `measure` subcommand: runs `command` with inherited stdio, writes a [`Measured`] to
/// `result`. Fails only when the command cannot be started or the result not written.
pub(crate) fn wrap(result: &Path, command: &[OsString]) -> Result<()> {
    let (program, args) = command.split_first().context("measure: no command given")?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("starting {}", program.to_string_lossy()))?;
    let wall = started.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage(RUSAGE_CHILDREN)")?;
    let measured = Measured {
        wall_ns: nanos(wall),
        // Linux reports ru_maxrss in KiB.
        max_rss_kib: u64::try_from(usage.max_rss()).unwrap_or(0),
        user_ns: u64::try_from(usage.user_time().num_nanoseconds()).unwrap_or(0),
        sys_ns: u64::try_from(usage.system_time().num_nanoseconds()).unwrap_or(0),
        exit: status.code(),
    };
    std::fs::write(result, serde_json::to_vec(&measured)?)
        .with_context(|| format!("writing {}", result.display()))?;
    Ok(())
}

/// Runs `command` under the `measure` wrapper (this same executable), with the command's
/// stdout sent to `/dev/null` when `stdout_null`; fails when the command failed.
pub(crate) fn measured(command: &[OsString], stdout_null: bool, scratch: &Path) -> Result<Measured> {
    let exe = std::env::current_exe().context("finding this executable")?;
    let result = scratch.join("measure-result.json");
    let _ = std::fs::remove_file(&result);
    let status = Command::new(&exe)
        .arg("measure")
        .arg("--result")
        .arg(&result)
        .arg("--")
        .args(command)
        .stdin(Stdio::null())
        .stdout(if stdout_null { Stdio::null() } else { Stdio::inherit() })
        .status()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !status.success() {
        bail!("the measure wrapper failed ({status}) for {}", show(command));
    }
    let text = std::fs::read(&result).with_context(|| format!("reading {}", result.display()))?;
    let measured: Measured = serde_json::from_slice(&text).context("parsing the measurement")?;
    if measured.exit != Some(0) {
        bail!("{} failed (exit {:?})", show(command), measured.exit);
    }
    Ok(measured)
}

/// A command line for messages.
pub(crate) fn show(command: &[OsString]) -> String {
    command.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ")
}

/// A duration in nanoseconds (saturating).
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_joins_arguments() {
        let cmd: Vec<OsString> = ["pg_basebackup", "-D", "-"].iter().map(OsString::from).collect();
        assert_eq!(show(&cmd), "pg_basebackup -D -");
    }

    #[test]
    fn nanos_saturates() {
        assert_eq!(nanos(Duration::from_millis(3)), 3_000_000);
        assert_eq!(nanos(Duration::MAX), u64::MAX);
    }
}
