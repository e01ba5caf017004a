//! The plugin's child processes, read from `/proc`: what a test needs to check that a plugin
//! leaves no process behind and puts no secret on a child's command line or in its environment.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One process as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Proc {
    /// Its id.
    pub pid: u32,
    /// Its parent's id.
    pub ppid: u32,
    /// `/proc/<pid>/comm` (the executable's name, at most 15 bytes).
    pub comm: String,
    /// `/proc/<pid>/cmdline`, split on NUL (empty for a zombie).
    pub argv: Vec<String>,
    /// `/proc/<pid>/environ`, split on NUL (empty for a zombie or when not readable).
    pub environ: Vec<String>,
    /// The state letter of `/proc/<pid>/stat` (`Z` for a zombie).
    pub state: char,
}

impl Proc {
    /// Whether `needle` appears in its argv or environment.
    pub fn mentions(&self, needle: &str) -> bool {
        self.argv.iter().chain(&self.environ).any(|s| s.contains(needle))
    }
}

fn split_nul(bytes: &[u8]) -> Vec<String> {
    bytes
        .split(|b| *b == 0)
        .filter(|s| !s.is_empty())
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// `(ppid, state)` from `/proc/<pid>/stat` (the command name in parentheses may hold spaces
/// and parentheses: the fields after the last `)` are read).
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Reads one process (`None` if it is gone).
pub fn read(pid: u32) -> Option<Proc> {
    let (ppid, state) = stat(pid)?;
    let dir = Path::new("/proc").join(pid.to_string());
    let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim_end().to_owned();
    let argv = std::fs::read(dir.join("cmdline")).map(|b| split_nul(&b)).unwrap_or_default();
    let environ = std::fs::read(dir.join("environ")).map(|b| split_nul(&b)).unwrap_or_default();
    Some(Proc { pid, ppid, comm, argv, environ, state })
}

/// Every process's parent, by pid.
fn parents() -> HashMap<u32, u32> {
    let mut map = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return map };
    for e in dir.flatten() {
        if let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok())
            && let Some((ppid, _)) = stat(pid)
        {
            map.insert(pid, ppid);
        }
    }
    map
}

/// The direct children of `pid` (zombies included).
pub fn children(pid: u32) -> Vec<Proc> {
    parents().into_iter().filter(|(_, p)| *p == pid).filter_map(|(c, _)| read(c)).collect()
}

/// Every descendant of `pid` (children, their children, …), zombies included.
pub fn descendants(pid: u32) -> Vec<Proc> {
    let parents = parents();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (&c, _) in parents.iter().filter(|(_, pp)| **pp == p) {
            frontier.push(c);
            if let Some(proc) = read(c) {
                found.push(proc);
            }
        }
    }
    found
}

/// Records every descendant of a process it sees: a thread that scans `/proc` about every
/// millisecond (short-lived children may slip through; tests that need a given child take a
/// deterministic [`Watcher::snapshot`] while it is known to run), plus explicit snapshots.
pub struct Watcher {
    pid: u32,
    seen: Arc<Seen>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    /// Starts watching the descendants of `pid`.
    pub fn start(pid: u32) -> Self {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (seen, stop) = (Arc::clone(&seen), Arc::clone(&stop));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    record(&seen, descendants(pid));
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        Self { pid, seen, stop, thread: Some(thread) }
    }

    /// Records the descendants running now, and returns them.
    pub fn snapshot(&self) -> Vec<Proc> {
        let now = descendants(self.pid);
        record(&self.seen, now.clone());
        now
    }

    /// Stops the thread; returns every process seen (one entry per pid and command line: a
    /// forked child is seen before and after its `exec`).
    pub fn stop(mut self) -> Vec<Proc> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.seen.lock().unwrap().values().cloned().collect()
    }

    /// Every process seen so far.
    pub fn seen(&self) -> Vec<Proc> {
        self.seen.lock().unwrap().values().cloned().collect()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Processes seen, by pid and command line.
type Seen = Mutex<BTreeMap<(u32, Vec<String>), Proc>>;

fn record(seen: &Seen, procs: Vec<Proc>) {
    let mut seen = seen.lock().unwrap();
    for p in procs {
        if p.state == 'Z' || p.argv.is_empty() {
            continue; // a zombie shows nothing
        }
        seen.entry((p.pid, p.argv.clone())).or_insert(p);
    }
}
