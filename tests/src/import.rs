//! The importer driver (§14.B): what kloset's `importSource` and integration-grpc's `Importer`
//! do with a plugin.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::mode;
use crate::proto::connectors;
use crate::proto::importer::importer_client::ImporterClient;
use crate::proto::importer::{ImportRequest, InitRequest, InitResponse, OpenRequest, Options};
use crate::store::{BlobStore, Entry, Info, Snapshot, base};

/// `Options` as Plakar fills them.
pub fn options(max_concurrency: i64, cwd: &str) -> Options {
    Options {
        hostname: "e2e-host".into(),
        os: "linux".into(),
        arch: "amd64".into(),
        cwd: cwd.into(),
        maxconcurrency: max_concurrency,
        excludes: vec![],
        noxattr: false,
    }
}

/// A client with Plakar's message limit (4 MiB) and no deadlines.
pub fn client(channel: Channel) -> ImporterClient<Channel> {
    ImporterClient::new(channel).max_decoding_message_size(4 << 20).max_encoding_message_size(4 << 20)
}

/// `Init`, with `config["location"]` normalised as Plakar does (`proto://rest`).
pub async fn init(
    channel: Channel,
    proto: &str,
    mut config: BTreeMap<String, String>,
    max_concurrency: i64,
) -> Result<InitResponse, tonic::Status> {
    if let Some(loc) = config.get("location").cloned() {
        let rest = loc.split_once(':').map_or(loc.as_str(), |(_, r)| r);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        config.insert("location".into(), format!("{proto}://{rest}"));
    }
    let req = InitRequest {
        options: Some(options(max_concurrency, &std::env::current_dir().unwrap().to_string_lossy())),
        proto: proto.into(),
        config: config.into_iter().collect(),
    };
    client(channel).init(req).await.map(|r| r.into_inner())
}

/// A per-record decision of a scenario.
pub type Decide = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Called by a worker after each chunk of an `Open` it received, with the path and the bytes
/// received so far for that path, before it reads the next chunk (the host stops reading
/// meanwhile: what a slow store or a scenario's side effect looks like to the plugin).
pub type OnChunk = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// How the host behaves during Import.
#[derive(Clone)]
pub struct Settings {
    /// `maxconcurrency`: records in flight and workers.
    pub concurrency: usize,
    /// Random delays before each worker's result, so acks come out of order.
    pub shuffle: bool,
    /// Acknowledge these paths without opening them (cache hit, dry run).
    pub skip: Decide,
    /// Cancel the `Open` of these paths after their first chunk.
    pub cancel_open: Decide,
    /// The parent snapshot whose entries may be reused (Plakar's VFS cache).
    pub cache: Option<Arc<Snapshot>>,
    /// Where content goes.
    pub store: BlobStore,
    /// A hook after each chunk received (see [`OnChunk`]).
    pub on_chunk: Option<OnChunk>,
}

impl Settings {
    /// `concurrency` workers, nothing special, content kept in `store`.
    pub fn new(concurrency: usize, store: BlobStore) -> Self {
        Self {
            concurrency,
            shuffle: false,
            skip: Arc::new(|_| false),
            cancel_open: Arc::new(|_| false),
            cache: None,
            store,
            on_chunk: None,
        }
    }
}

/// What happened during Import.
#[derive(Debug)]
pub struct Outcome {
    /// `Ok` if the backup would commit: Import ended without an error status and the host
    /// received `finished`; else the message Plakar would print.
    pub result: Result<(), String>,
    /// The snapshot (with synthesised parents).
    pub snapshot: Snapshot,
    /// Protocol violations by the plugin (hard failures of §14.B).
    pub violations: Vec<String>,
    /// Warnings (cache traps, …).
    pub warnings: Vec<String>,
    /// Records received, in arrival order.
    pub order: Vec<String>,
    /// How many times `finished` arrived.
    pub finished: u32,
    /// `Open`s made.
    pub opens: u64,
    /// Records acknowledged without `Open` (skipped or cache hits).
    pub not_opened: u64,
    /// Cache hits.
    pub cache_hits: u64,
    /// `Open`s cancelled on purpose.
    pub cancelled: u64,
    /// Body bytes received.
    pub bytes: u64,
    /// The most `Open`s in flight at once.
    pub max_open_in_flight: u64,
}

struct Shared {
    snapshot: Mutex<Snapshot>,
    violations: Mutex<Vec<String>>,
    warnings: Mutex<Vec<String>>,
    pending: Mutex<HashSet<String>>,
    opens: AtomicU64,
    not_opened: AtomicU64,
    cache_hits: AtomicU64,
    cancelled: AtomicU64,
    bytes: AtomicU64,
    in_flight: AtomicU64,
    max_in_flight: AtomicU64,
}

fn violation(sh: &Shared, msg: String) {
    sh.violations.lock().unwrap().push(msg);
}

fn key(r: &connectors::Record) -> String {
    if r.is_xattr { format!("xattr:{}:{}", r.pathname, r.xattr_name) } else { r.pathname.clone() }
}

/// Checks a record as §14.B says (violations are hard failures, warnings are reported).
fn validate(sh: &Shared, r: &connectors::Record, cache: Option<&Snapshot>) {
    let p = &r.pathname;
    if r.file_info.is_none() && r.error.is_empty() && !r.is_xattr {
        violation(sh, format!("invalid record {p}: missing fileinfo"));
    }
    let clean = p.starts_with('/')
        && (p == "/"
            || (!p.ends_with('/') && !p.contains("//") && !p.split('/').any(|c| c == "." || c == "..")));
    if !clean {
        violation(sh, format!("{p:?}: not an absolute clean path"));
    }
    if let Some(fi) = &r.file_info {
        if fi.name != base(p) || fi.name.is_empty() || (fi.name.contains('/') && p != "/") {
            violation(sh, format!("{p}: name {:?} is not the basename of the path", fi.name));
        }
        if fi.mode & 0o170000 != 0 && fi.mode & mode::TYPE == 0 {
            violation(sh, format!("{p}: mode {:#o} looks POSIX, not Go", fi.mode));
        }
        if !r.target.is_empty() && !mode::is_symlink(fi.mode) {
            violation(sh, format!("{p}: a target without ModeSymlink"));
        }
        if mode::is_symlink(fi.mode) && r.target.is_empty() {
            violation(sh, format!("{p}: ModeSymlink without a target"));
        }
        if fi.nlink > 1 && fi.dev == 0 && fi.ino == 0 {
            sh.warnings.lock().unwrap().push(format!("{p}: nlink {} with dev = ino = 0", fi.nlink));
        }
        if let Some(prev) = cache.and_then(|c| c.entries.get(p)) {
            let ts = fi.mod_time.unwrap_or_default();
            if fi.size == -1 && prev.info.mtime_secs == ts.seconds && prev.info.mtime_nanos == ts.nanos {
                sh.warnings
                    .lock()
                    .unwrap()
                    .push(format!("{p}: size -1 with the previous run's mtime (cache trap)"));
            }
        }
    }
    if !(0..=2).contains(&r.xattr_type) {
        violation(sh, format!("{p}: xattrType {}", r.xattr_type));
    }
    if !sh.pending.lock().unwrap().insert(key(r)) {
        violation(sh, format!("{p}: two pending records with the same key"));
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Runs `Import` as Plakar does and returns what it stored. `init` is the plugin's `Init`
/// answer (root, type, origin go into the snapshot).
pub async fn run(channel: Channel, init: &InitResponse, settings: Settings) -> Outcome {
    let sh = Arc::new(Shared {
        snapshot: Mutex::new(Snapshot {
            root: init.root.clone(),
            r#type: init.r#type.clone(),
            origin: init.origin.clone(),
            ..Snapshot::default()
        }),
        violations: Mutex::default(),
        warnings: Mutex::default(),
        pending: Mutex::default(),
        opens: AtomicU64::new(0),
        not_opened: AtomicU64::new(0),
        cache_hits: AtomicU64::new(0),
        cancelled: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        in_flight: AtomicU64::new(0),
        max_in_flight: AtomicU64::new(0),
    });
    let n = settings.concurrency.max(1);
    let (results_tx, results_rx) = mpsc::unbounded_channel::<connectors::Record>();
    let requests =
        tokio_stream::StreamExt::map(tokio_stream::wrappers::UnboundedReceiverStream::new(results_rx), |h| {
            ImportRequest { result: Some(connectors::Result { header: Some(h), error: String::new() }) }
        });
    let mut outcome = Outcome {
        result: Ok(()),
        snapshot: Snapshot::default(),
        violations: Vec::new(),
        warnings: Vec::new(),
        order: Vec::new(),
        finished: 0,
        opens: 0,
        not_opened: 0,
        cache_hits: 0,
        cancelled: 0,
        bytes: 0,
        max_open_in_flight: 0,
    };
    let mut stream = match client(channel.clone()).import(requests).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            outcome.result = Err(format!("import failed: {}", s.message()));
            return outcome;
        }
    };
    let (records_tx, records_rx) = mpsc::channel::<connectors::Record>(n);
    let records_rx = Arc::new(tokio::sync::Mutex::new(records_rx));
    let mut workers = Vec::new();
    for w in 0..n {
        let records_rx = Arc::clone(&records_rx);
        let results_tx = results_tx.clone();
        let sh = Arc::clone(&sh);
        let settings = settings.clone();
        let channel = channel.clone();
        workers.push(tokio::spawn(async move {
            let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1).wrapping_mul(0x2545_F491_4F6C_DD1D));
            loop {
                let r = records_rx.lock().await.recv().await;
                let Some(r) = r else { break };
                let header = process(&sh, &settings, &channel, r).await;
                if settings.shuffle {
                    tokio::time::sleep(Duration::from_micros(rng.next() % 3000)).await;
                }
                sh.pending.lock().unwrap().remove(&key(&header));
                let _ = results_tx.send(header);
            }
        }));
    }
    drop(results_tx);
    // The receiver loop.
    let mut failed = None;
    loop {
        match stream.message().await {
            Ok(None) => break,
            Err(s) => {
                failed = Some(format!("import failed: {}", s.message()));
                break;
            }
            Ok(Some(m)) if m.finished => {
                outcome.finished += 1;
                break; // never Recv again
            }
            Ok(Some(m)) => match m.record {
                None => {
                    failed = Some("expected a record".into());
                    break;
                }
                Some(r) => {
                    validate(&sh, &r, settings.cache.as_deref());
                    if r.file_info.is_none() && r.error.is_empty() && !r.is_xattr {
                        failed = Some(format!("invalid record {}: missing fileinfo", r.pathname));
                        break;
                    }
                    outcome.order.push(r.pathname.clone());
                    if records_tx.send(r).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    drop(records_tx);
    for w in workers {
        let _ = w.await;
    }
    // All results sent; the request stream half-closes when the last sender is gone (done).
    // Keep the response stream alive until then, as the Go client does, but never read it
    // again after `finished`.
    tokio::time::sleep(Duration::from_millis(10)).await;
    drop(stream);
    if outcome.finished == 0 && failed.is_none() {
        failed = Some("the plugin ended Import without `finished`".into());
    }
    outcome.result = match failed {
        Some(f) => Err(f),
        None => Ok(()),
    };
    let mut snapshot = std::mem::take(&mut *sh.snapshot.lock().unwrap());
    snapshot.relink();
    outcome.snapshot = snapshot;
    outcome.violations = std::mem::take(&mut *sh.violations.lock().unwrap());
    outcome.warnings = std::mem::take(&mut *sh.warnings.lock().unwrap());
    outcome.opens = sh.opens.load(Ordering::SeqCst);
    outcome.not_opened = sh.not_opened.load(Ordering::SeqCst);
    outcome.cache_hits = sh.cache_hits.load(Ordering::SeqCst);
    outcome.cancelled = sh.cancelled.load(Ordering::SeqCst);
    outcome.bytes = sh.bytes.load(Ordering::SeqCst);
    outcome.max_open_in_flight = sh.max_in_flight.load(Ordering::SeqCst);
    outcome
}

/// One worker's handling of a record; returns the result header.
async fn process(
    sh: &Shared,
    settings: &Settings,
    channel: &Channel,
    mut r: connectors::Record,
) -> connectors::Record {
    let path = r.pathname.clone();
    if !r.error.is_empty() {
        sh.snapshot.lock().unwrap().errors.insert(path, r.error.clone());
        sh.not_opened.fetch_add(1, Ordering::SeqCst);
        return r;
    }
    let Some(fi) = r.file_info.clone() else {
        sh.not_opened.fetch_add(1, Ordering::SeqCst);
        return r;
    };
    let mut info = Info::from_proto(&fi);
    let regular = mode::is_regular(fi.mode) || r.is_xattr;
    r.has_reader = regular;
    let mut content = None;
    if regular {
        let cached = settings
            .cache
            .as_ref()
            .and_then(|c| c.entries.get(&path))
            .filter(|prev| info.cache_equal(&prev.info))
            .cloned();
        if let Some(prev) = cached {
            sh.cache_hits.fetch_add(1, Ordering::SeqCst);
            sh.not_opened.fetch_add(1, Ordering::SeqCst);
            content = prev.content.clone();
            info.size = prev.info.size;
        } else if (settings.skip)(&path) {
            sh.not_opened.fetch_add(1, Ordering::SeqCst);
        } else {
            let cancel_after_first = (settings.cancel_open)(&path);
            match open(sh, settings, channel, &r, cancel_after_first).await {
                Ok(Some((hash, len))) => {
                    content = Some(hash);
                    info.size = len as i64;
                }
                Ok(None) => {
                    sh.snapshot.lock().unwrap().errors.insert(path.clone(), "cancelled by the host".into());
                }
                Err(e) => {
                    sh.snapshot
                        .lock()
                        .unwrap()
                        .errors
                        .insert(path.clone(), format!("failed to receive file data: {e}"));
                }
            }
        }
    } else {
        sh.not_opened.fetch_add(1, Ordering::SeqCst);
    }
    r.file_info = Some(info.to_proto());
    let target = r.target.clone();
    sh.snapshot.lock().unwrap().entries.insert(path, Entry { info, target, content, synthetic: false });
    r
}

/// `Open`, read to EOF (checking every chunk), cancel. `Ok(None)` if cancelled on purpose.
async fn open(
    sh: &Shared,
    settings: &Settings,
    channel: &Channel,
    r: &connectors::Record,
    cancel_after_first: bool,
) -> Result<Option<(String, u64)>, String> {
    sh.opens.fetch_add(1, Ordering::SeqCst);
    let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let req = OpenRequest {
        record: Some(connectors::Record {
            pathname: r.pathname.clone(),
            is_xattr: r.is_xattr,
            xattr_name: r.xattr_name.clone(),
            xattr_type: r.xattr_type,
            target: r.target.clone(),
            ..Default::default()
        }),
    };
    let result = async {
        let mut stream =
            client(channel.clone()).open(req).await.map_err(|s| s.message().to_owned())?.into_inner();
        let mut w = settings.store.writer().map_err(|e| e.to_string())?;
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if m.chunk.is_empty() {
                        violation(sh, format!("{}: an empty Open chunk", r.pathname));
                    }
                    if m.chunk.len() > 1 << 20 {
                        violation(sh, format!("{}: an Open chunk of {} bytes", r.pathname, m.chunk.len()));
                    }
                    w.write(&m.chunk).map_err(|e| e.to_string())?;
                    sh.bytes.fetch_add(m.chunk.len() as u64, Ordering::SeqCst);
                    if let Some(hook) = &settings.on_chunk {
                        hook(&r.pathname, w.len());
                    }
                    if cancel_after_first {
                        sh.cancelled.fetch_add(1, Ordering::SeqCst);
                        w.discard();
                        return Ok(None); // drops the stream: RST_STREAM(CANCEL)
                    }
                }
                Ok(None) => break,
                Err(s) => {
                    w.discard();
                    return Err(s.message().to_owned());
                }
            }
        }
        let len = w.len();
        let hash = settings.store.commit(w).map_err(|e| e.to_string())?;
        Ok(Some((hash, len)))
    }
    .await;
    sh.in_flight.fetch_sub(1, Ordering::SeqCst);
    result
}

/// Counts of records by kind in a snapshot (non-synthetic).
pub fn kinds(s: &Snapshot) -> HashMap<&'static str, usize> {
    let mut m = HashMap::new();
    for e in s.entries.values().filter(|e| !e.synthetic) {
        let k = if mode::is_dir(e.info.mode) {
            "dir"
        } else if mode::is_symlink(e.info.mode) {
            "symlink"
        } else {
            "file"
        };
        *m.entry(k).or_insert(0) += 1;
    }
    m
}
