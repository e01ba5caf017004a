//! Child processes that cannot outlive the plugin.
//!
//! Plakar ends a plugin with SIGKILL (its context is cancelled at exit) or by closing its
//! pipes. A SIGKILLed process runs no cleanup, so a `pg_dump` it started would go on running,
//! reparented to PID 1. Crates that spawn children accept a hook, a `Fn(&mut Command)`; plugins
//! pass [`configure`], which:
//!
//! - puts the child in its own process group, so the whole group (`pg_dumpall` runs `pg_dump`
//!   through `sh`) can be signalled with one `killpg`;
//! - sets `PR_SET_PDEATHSIG(SIGKILL)` in the child, so the kernel kills it when the plugin dies,
//!   however it dies;
//! - gives it `stdin` = `/dev/null` unless the caller set something else afterwards (a child
//!   that inherits fd 0 would read the host's HTTP/2 bytes).
//!
//! The parent-death signal fires when the *thread* that forked exits: spawn children from a
//! runtime worker or the main thread, not from a short-lived blocking-pool thread.
//!
//! [`register_group`] records a process group; [`kill_all`] (called by the runtime on `Close`
//! and before exiting) SIGKILLs every group still registered.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

static GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// Prepares a command so its process dies with the plugin (see the module docs).
pub fn configure(cmd: &mut Command) {
    cmd.process_group(0).stdin(Stdio::null());
    let parent = std::process::id() as i32;
    // SAFETY: the closure only makes async-signal-safe system calls (prctl, getppid, _exit)
    // between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Some(Signal::SIGKILL)).map_err(std::io::Error::from)?;
            // The plugin may have died between fork and prctl: then nobody would send the signal.
            if nix::unistd::getppid().as_raw() != parent {
                nix::libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Same as [`configure`], for a `tokio::process::Command`.
pub fn configure_tokio(cmd: &mut tokio::process::Command) {
    configure(cmd.as_std_mut());
}

/// A registered process group; unregisters itself when dropped.
#[derive(Debug)]
pub struct GroupGuard(i32);

/// Records `pgid` (the child's pid, when it was spawned with [`configure`]) so that
/// [`kill_all`] kills its group. Keep the guard while the child may run.
pub fn register_group(pgid: u32) -> GroupGuard {
    let pgid = pgid as i32;
    GROUPS.lock().unwrap_or_else(|e| e.into_inner()).insert(pgid);
    GroupGuard(pgid)
}

impl GroupGuard {
    /// The process group id.
    pub fn pgid(&self) -> u32 {
        self.0 as u32
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        GROUPS.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.0);
    }
}

/// SIGKILLs every registered process group. Returns how many groups were signalled.
pub fn kill_all() -> usize {
    let groups: Vec<i32> = GROUPS.lock().unwrap_or_else(|e| e.into_inner()).iter().copied().collect();
    let mut n = 0;
    for g in groups {
        if killpg(Pid::from_raw(g), Signal::SIGKILL).is_ok() {
            tracing::debug!(pgid = g, "killed child process group");
            n += 1;
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_configured_child_is_in_its_own_group_and_killed_by_kill_all() {
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "sleep 30 & sleep 30; wait"]);
        configure_tokio(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let pid = child.id().unwrap();
        let pgid = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap();
        assert_eq!(pgid.as_raw() as u32, pid, "the child leads its own process group");
        let guard = register_group(pid);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(kill_all() >= 1);
        let status =
            tokio::time::timeout(std::time::Duration::from_secs(5), child.wait()).await.unwrap().unwrap();
        assert!(!status.success());
        // The background sleep of the same group is gone too (dead: a zombie waiting for its
        // reaper counts as gone).
        let mut alive = live_members(pid);
        for _ in 0..50 {
            if alive.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            alive = live_members(pid);
        }
        assert!(alive.is_empty(), "survivors in the group: {alive:?}");
        drop(guard);
    }

    /// Processes of group `pgid` that are not zombies.
    fn live_members(pgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
            // pid (comm) state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
                out.push(pid);
            }
        }
        out
    }
}
