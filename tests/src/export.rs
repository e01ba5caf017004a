//! The exporter driver (§14.C), and a writer that restores a snapshot subtree to a directory as
//! Plakar's built-in `fs` exporter does (§13.3).

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::mpsc;
use tonic::transport::Channel;

use crate::mode;
use crate::proto::connectors;
use crate::proto::exporter::exporter_client::ExporterClient;
use crate::proto::exporter::{ExportRequest, InitRequest, InitResponse, Options, export_request::Packet};
use crate::store::{BlobStore, Entry, Snapshot, base, parent};

/// A client with Plakar's message limit and no deadlines.
pub fn client(channel: Channel) -> ExporterClient<Channel> {
    ExporterClient::new(channel).max_decoding_message_size(4 << 20).max_encoding_message_size(4 << 20)
}

/// `Init` of an exporter (empty excludes), `location` normalised as Plakar does.
pub async fn init(
    channel: Channel,
    proto: &str,
    mut config: BTreeMap<String, String>,
) -> Result<InitResponse, tonic::Status> {
    if let Some(loc) = config.get("location").cloned() {
        let rest = loc.split_once(':').map_or(loc.as_str(), |(_, r)| r);
        let rest = rest.strip_prefix("//").unwrap_or(rest);
        config.insert("location".into(), format!("{proto}://{rest}"));
    }
    let req = InitRequest {
        options: Some(Options {
            hostname: "e2e-host".into(),
            os: "linux".into(),
            arch: "amd64".into(),
            cwd: std::env::current_dir().unwrap().to_string_lossy().into_owned(),
            maxconcurrency: 4,
            excludes: vec![],
            noxattr: false,
        }),
        proto: proto.into(),
        config: config.into_iter().collect(),
    };
    client(channel).init(req).await.map(|r| r.into_inner())
}

/// The records Plakar sends for a restore of `pathname` (§9.2): pre-order, children sorted by
/// name; a directory becomes `/`, a file is preceded by a synthetic `/`.
pub fn walk(snapshot: &Snapshot, pathname: &str) -> Vec<(connectors::Record, Option<String>)> {
    let mut out = Vec::new();
    let Some(entry) = snapshot.entries.get(pathname) else { return out };
    let is_dir = mode::is_dir(entry.info.mode);
    let tostrip = if is_dir {
        pathname.to_owned()
    } else {
        match parent(pathname) {
            Some("/") | None => String::new(),
            Some(d) => d.to_owned(),
        }
    };
    if !is_dir {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        out.push((
            connectors::Record {
                pathname: "/".into(),
                file_info: Some(connectors::FileInfo {
                    name: "/".into(),
                    mode: mode::DIR | 0o700,
                    mod_time: Some(prost_types::Timestamp { seconds: now.as_secs() as i64, nanos: 0 }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            None,
        ));
    }
    let mut stack = vec![pathname.to_owned()];
    while let Some(p) = stack.pop() {
        let e = &snapshot.entries[&p];
        let rel = p.strip_prefix(tostrip.as_str()).unwrap_or(&p);
        let rel = if rel.starts_with('/') { rel.to_owned() } else { format!("/{rel}") };
        let regular = mode::is_regular(e.info.mode);
        out.push((
            connectors::Record {
                pathname: rel,
                target: e.target.clone(),
                has_reader: regular,
                file_info: Some(e.info.to_proto()),
                ..Default::default()
            },
            if regular { Some(e.content.clone().unwrap_or_default()) } else { None },
        ));
        if mode::is_dir(e.info.mode) {
            let children = snapshot.children(&p);
            for c in children.into_iter().rev() {
                stack.push(c.to_owned());
            }
        }
    }
    out
}

/// Called by the sender with a file's path (as sent) after its last data chunk and before its
/// empty end chunk: the plugin has the whole body but not its end, so the child restoring it
/// is still running, waiting for more input.
pub type BeforeEnd = Arc<dyn Fn(&str) + Send + Sync>;

/// How the host misbehaves during Export.
#[derive(Clone, Default)]
pub struct ExportSettings {
    /// Stop in the middle of the `n`-th file's body (0-based among files with content): half-close
    /// without the end chunk, as on a repository read error.
    pub truncate_file: Option<usize>,
    /// A hook before each end chunk (see [`BeforeEnd`]).
    pub before_end: Option<BeforeEnd>,
}

impl std::fmt::Debug for ExportSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportSettings")
            .field("truncate_file", &self.truncate_file)
            .field("before_end", &self.before_end.as_ref().map(|_| "hook"))
            .finish()
    }
}

/// What happened during Export.
#[derive(Debug)]
pub struct ExportOutcome {
    /// `Ok` if the restore succeeded, else the message Plakar would print.
    pub result: Result<(), String>,
    /// One result per record, by path: the error text (empty = OK).
    pub results: Vec<(String, String)>,
    /// Protocol violations (a result without a header, a header without file info, …).
    pub violations: Vec<String>,
    /// Records sent.
    pub sent: usize,
}

/// Runs `Export` of `pathname` from `snapshot`, with content from `store`.
pub async fn run(
    channel: Channel,
    snapshot: &Snapshot,
    store: &BlobStore,
    pathname: &str,
    settings: ExportSettings,
) -> ExportOutcome {
    let records = walk(snapshot, pathname);
    let sent = records.len();
    let (tx, rx) = mpsc::channel::<ExportRequest>(4);
    let store = store.clone();
    let sender = tokio::spawn(async move {
        let mut files = 0usize;
        for (record, content) in records {
            let record_path = record.pathname.clone();
            if tx.send(ExportRequest { packet: Some(Packet::Record(record)) }).await.is_err() {
                return;
            }
            if let Some(hash) = content {
                let data = if hash.is_empty() { Vec::new() } else { store.read(&hash).expect("blob") };
                let data = Bytes::from(data);
                let truncate = settings.truncate_file == Some(files);
                files += 1;
                let mut off = 0;
                while off < data.len() {
                    let end = (off + (1 << 20)).min(data.len());
                    if tx
                        .send(ExportRequest { packet: Some(Packet::Chunk(data.slice(off..end))) })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    off = end;
                    if truncate {
                        return; // half-close without the end chunk
                    }
                }
                if truncate {
                    return;
                }
                if let Some(hook) = &settings.before_end {
                    let path = record_path.clone();
                    let hook = Arc::clone(hook);
                    // Off the runtime's threads: the hook may read /proc or wait.
                    let _ = tokio::task::spawn_blocking(move || hook(&path)).await;
                }
                if tx.send(ExportRequest { packet: Some(Packet::Chunk(Bytes::new())) }).await.is_err() {
                    return;
                }
            }
        }
    });
    let mut outcome = ExportOutcome { result: Ok(()), results: Vec::new(), violations: Vec::new(), sent };
    let mut stream = match client(channel).export(tokio_stream::wrappers::ReceiverStream::new(rx)).await {
        Ok(s) => s.into_inner(),
        Err(s) => {
            outcome.result = Err(s.message().to_owned());
            return outcome;
        }
    };
    outcome.result = loop {
        match stream.message().await {
            Ok(None) => break Ok(()),
            Err(s) => break Err(s.message().to_owned()),
            Ok(Some(m)) => match m.result.and_then(|r| r.header.map(|h| (h, r.error))) {
                None => outcome.violations.push("a result without a header (plakar would panic)".into()),
                Some((h, error)) => {
                    if h.file_info.is_none() && h.error.is_empty() && !h.is_xattr {
                        outcome.violations.push(format!("invalid record {}: missing fileinfo", h.pathname));
                    }
                    outcome.results.push((h.pathname, error));
                }
            },
        }
    };
    let _ = sender.await;
    if outcome.result.is_ok() && outcome.results.len() != outcome.sent {
        outcome.violations.push(format!("{} results for {} records", outcome.results.len(), outcome.sent));
    }
    outcome
}

/// Restores the subtree `pathname` of `snapshot` into `target` as Plakar's `fs` exporter does:
/// directories pre-order with `mkdir 0700`, files through a temporary name and `rename`, then
/// `chmod` of the permission bits, symlinks as they are, directory permissions last (deepest
/// first). No chown (the fs exporter chowns nothing for regular files).
pub fn write_out(
    snapshot: &Snapshot,
    store: &BlobStore,
    pathname: &str,
    target: &Path,
) -> std::io::Result<()> {
    let mut dirs = Vec::new();
    for (record, content) in walk(snapshot, pathname) {
        let rel = record.pathname.trim_start_matches('/');
        let path = if rel.is_empty() { target.to_owned() } else { target.join(rel) };
        let fi = record.file_info.clone().unwrap_or_default();
        if mode::is_dir(fi.mode) {
            match std::fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
            dirs.push((path, mode::posix_perm(fi.mode)));
        } else if mode::is_symlink(fi.mode) {
            std::os::unix::fs::symlink(&record.target, &path)?;
        } else if let Some(hash) = content {
            let data = if hash.is_empty() { Vec::new() } else { store.read(&hash)? };
            let tmp = path.with_file_name(format!(".plakar-{}", base(&record.pathname)));
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, &path)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode::posix_perm(fi.mode)))?;
        }
    }
    for (path, perm) in dirs.into_iter().rev() {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(perm))?;
    }
    Ok(())
}

/// An entry's content.
pub fn content(store: &BlobStore, e: &Entry) -> Vec<u8> {
    match &e.content {
        Some(h) => store.read(h).expect("blob"),
        None => Vec::new(),
    }
}
