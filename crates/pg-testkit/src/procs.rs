//! Processes: who the server runs as, liveness by `/proc`, and the cleanup of clusters left by
//! killed test processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Gives `path` and everything under it (without following links) to the user servers run
/// as: a restored backup written by the test must belong to the server before it can start.
pub fn give_to_server_user(path: &Path) -> Result<()> {
    let (uid, gid) = server_user_ids()?;
    chown_tree(path, uid, gid)
        .map_err(|e| crate::Error::Io { what: format!("chown -R {}", path.display()), error: e })
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// The (uid, gid) servers run as: the `postgres` OS user when the test runs as root (servers
/// refuse to run as root), else the test process's own.
pub fn server_user_ids() -> Result<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return Ok((nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw()));
    }
    match nix::unistd::User::from_name("postgres") {
        Ok(Some(user)) => Ok((user.uid.as_raw(), user.gid.as_raw())),
        _ => Err(Error::Config(
            "running as root but the `postgres` OS user does not exist: run scripts/setup-postgres".into(),
        )),
    }
}

/// This process's identity as recorded in a cluster directory: `<pid> <start time>`.
pub(crate) fn owner_tag() -> String {
    let pid = std::process::id() as i32;
    format!("{pid} {}", start_time(pid).unwrap_or(0))
}

/// Records this process as the owner of cluster directory `dir` (see [`reap_stale`]).
///
/// Written under a temporary name and renamed into place: a reaper in another thread or process
/// never reads a half-written (empty) `owner` file, which it would take for a dead owner's and
/// remove the directory being created.
pub(crate) fn write_owner(dir: &Path) -> std::io::Result<()> {
    let tmp = dir.join("owner.tmp");
    fs::write(&tmp, owner_tag())?;
    fs::rename(&tmp, dir.join("owner"))
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks), `None` if gone or a zombie.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces: split after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    start_time(pid).is_some()
}

/// Whether the owner recorded as `tag` (see [`owner_tag`]) is still running.
fn owner_alive(tag: &str) -> bool {
    let mut parts = tag.split_whitespace();
    let (Some(Ok(pid)), Some(Ok(start))) =
        (parts.next().map(str::parse::<i32>), parts.next().map(str::parse::<u64>))
    else {
        return false;
    };
    start_time(pid) == Some(start)
}

/// PIDs of live processes whose working directory is inside `dir` or whose command line
/// mentions it (a postmaster and its children run with the data directory as cwd).
pub fn processes_using(dir: &Path) -> Vec<i32> {
    let needle = dir.to_string_lossy().into_owned();
    let mut pids = Vec::new();
    let Ok(entries) = fs::read_dir("/proc") else { return pids };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        if !process_alive(pid) {
            continue;
        }
        let cwd_inside = fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir));
        let cmd_mentions = fs::read(entry.path().join("cmdline"))
            .is_ok_and(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(&needle));
        if cwd_inside || cmd_mentions {
            pids.push(pid);
        }
    }
    pids
}

/// Waits up to `timeout` for `pid` to be gone; true if it is.
pub(crate) fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while process_alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

/// Stops a postmaster we do not own (not our child): SIGQUIT, then SIGKILL after a short wait,
/// then SIGKILL to anything still running in `data_dir`.
fn kill_foreign_postmaster(pid: i32, data_dir: &Path) {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    // Guard against PID reuse: only signal a process started on this data directory.
    if String::from_utf8_lossy(&cmdline).contains(&*data_dir.to_string_lossy()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
        if !wait_gone(pid, Duration::from_secs(3)) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            wait_gone(pid, Duration::from_secs(2));
        }
    }
    for child in processes_using(data_dir) {
        if child != std::process::id() as i32 {
            let _ = kill(Pid::from_raw(child), Signal::SIGKILL);
            wait_gone(child, Duration::from_secs(2));
        }
    }
}

/// The postmaster PID recorded in `data_dir/postmaster.pid`, if any.
pub(crate) fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    fs::read_to_string(data_dir.join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
}

/// Removes every cluster directory under `clusters` whose owning process is dead, stopping its
/// postmaster first; and template build and scratch directories left by dead processes.
pub(crate) fn reap_stale(clusters: &Path, templates: &Path, scratch: &Path) {
    if let Ok(entries) = fs::read_dir(clusters) {
        for entry in entries.flatten() {
            let dir = entry.path();
            let Ok(tag) = fs::read_to_string(dir.join("owner")) else {
                // Being created right now (the owner file comes first) or foreign: leave it.
                continue;
            };
            if owner_alive(&tag) {
                continue;
            }
            let data_dir =
                fs::read_to_string(dir.join("data_dir")).map(PathBuf::from).unwrap_or(dir.join("data"));
            if let Some(pid) = postmaster_pid(&data_dir) {
                kill_foreign_postmaster(pid, &data_dir);
            }
            if fs::read(dir.join("remove_data_dir")).is_ok() {
                let _ = fs::remove_dir_all(&data_dir);
            }
            let _ = fs::remove_dir_all(&dir);
        }
    }
    reap_named(templates, ".tmp-");
    reap_named(scratch, "");
}

/// Removes the entries of `parent` named `<prefix><pid>-<start time>-…` whose process is dead.
fn reap_named(parent: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(prefix) else { continue };
        let mut parts = rest.split('-');
        let tag = format!("{} {}", parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if !owner_alive(&tag) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_owner_tag_matches() {
        assert!(process_alive(std::process::id() as i32));
        assert!(owner_alive(&owner_tag()));
        assert!(!owner_alive("999999999 1"));
        assert!(!owner_alive("garbage"));
    }

    /// A reaper running beside directory creation never removes a directory being created (it
    /// did when the owner file was written in place: an empty file read mid-write looked dead).
    #[test]
    fn reaper_never_takes_a_directory_being_created() {
        let base =
            std::env::temp_dir().join(format!("pg-testkit-reap-race-{}", owner_tag().replace(' ', "-")));
        let (clusters, none) = (base.join("clusters"), base.join("none"));
        fs::create_dir_all(&clusters).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reaper = {
            let (clusters, none, stop) = (clusters.clone(), none.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    reap_stale(&clusters, &none, &none);
                }
            })
        };
        for n in 0..2000 {
            let dir = clusters.join(format!("c{n}"));
            fs::create_dir(&dir).unwrap();
            write_owner(&dir).unwrap();
            fs::write(dir.join("data_dir"), b"x").unwrap_or_else(|e| panic!("directory {n} was reaped: {e}"));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reaper.join().unwrap();
        assert_eq!(fs::read_dir(&clusters).unwrap().count(), 2000);
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn finds_a_process_by_cwd() {
        let dir = std::env::temp_dir().join(format!("pg-testkit-procs-unit-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let mut child = std::process::Command::new("sleep").arg("30").current_dir(&dir).spawn().unwrap();
        let pid = child.id() as i32;
        assert!(processes_using(&dir).contains(&pid));
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(!processes_using(&dir).contains(&pid));
        fs::remove_dir_all(&dir).unwrap();
    }
}
