//! `-R` (`--write-recovery-conf`): the backup becomes a standby of its source, as with
//! `pg_basebackup -R`: `standby.signal` and `primary_conninfo` (and `primary_slot_name` with
//! `-S`) in `postgresql.auto.conf`. Unlike pg_basebackup, the password is left out unless
//! asked for (`--write-password`): the standby reads it from its passfile.
//!
//! It wraps any sink: `postgresql.auto.conf` (small) is held until its end and passed on with
//! the lines appended; `standby.signal` is added before the sink finishes. The source verified
//! every file against backup_manifest before it reached this wrapper; like pg_verifybackup, our
//! `verify` ignores these two files.

use std::time::SystemTime;

use anyhow::{Context, Result};
use bytes::Bytes;
use pg_config::{Config, Param};
use record_sink::{EntryKind, Flow, Metadata, Record, RecordPath, RecordSink, SinkError, Wants};

/// Largest `postgresql.auto.conf` held in memory.
const MAX_AUTO_CONF: usize = 1 << 20;

const AUTO_CONF: &str = "/data/postgresql.auto.conf";
const SIGNAL: &str = "/data/standby.signal";

/// The `postgresql.auto.conf` lines of a standby of the server `config` reaches.
pub(crate) fn recovery_lines(config: &Config, slot: Option<&str>, with_password: bool) -> Result<String> {
    let mut c = config.clone();
    // What a walreceiver must not inherit from our connection.
    for p in [Param::DbName, Param::Replication, Param::FallbackApplicationName] {
        c.unset(p);
    }
    if !with_password {
        c.unset(Param::Password);
    }
    // What the environment supplied (PGHOST, PGUSER, …) is written explicitly: the standby's
    // environment is not ours.
    let resolved = config.resolve().context("resolving the connection for primary_conninfo")?;
    if !c.is_set(Param::User) && !resolved.user.is_empty() {
        c.set_user(&resolved.user)?;
    }
    if !c.is_set(Param::Host)
        && !c.is_set(Param::HostAddr)
        && let Some(t) = resolved.targets.first()
    {
        c.set_host(&t.host_text())?;
        if !c.is_set(Param::Port) {
            c.set_port(t.port)?;
        }
    }
    let conninfo = if with_password {
        c.to_keyword_string_exposing_password()
    } else {
        c.to_keyword_string_without_password()
    };
    let mut out = String::from("# Written by pgplakar backup physical -R\n");
    out.push_str(&format!("primary_conninfo = '{}'\n", escape_guc(&conninfo)));
    if let Some(slot) = slot {
        out.push_str(&format!("primary_slot_name = '{}'\n", escape_guc(slot)));
    }
    Ok(out)
}

/// A string value for postgresql.conf: `'` and `\` doubled, as pg_basebackup's escape_quotes.
fn escape_guc(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\'', "''")
}

/// Adds the standby configuration to the backup passing through.
#[derive(Debug)]
pub(crate) struct StandbySink<'a, S> {
    inner: &'a mut S,
    lines: String,
    /// `postgresql.auto.conf` being held.
    held: Option<(Record, Vec<u8>)>,
    auto_conf_done: bool,
}

impl<'a, S: RecordSink> StandbySink<'a, S> {
    pub(crate) fn new(inner: &'a mut S, lines: String) -> Self {
        Self { inner, lines, held: None, auto_conf_done: false }
    }

    async fn emit(&mut self, record: Record, body: Vec<u8>) -> Result<(), SinkError> {
        if self.inner.record(&record).await? == Wants::Body && !body.is_empty() {
            // Flow::Stop only means the consumer stopped reading this small file.
            let _ = self.inner.data(Bytes::from(body)).await?;
        }
        self.inner.end_file().await
    }
}

fn new_file(path: &str, size: usize) -> Record {
    Record {
        path: RecordPath::new(path).expect("a valid path"),
        kind: EntryKind::File { size: Some(size as u64) },
        meta: Metadata::new(0o600, SystemTime::now()),
    }
}

impl<S: RecordSink> RecordSink for StandbySink<'_, S> {
    async fn record(&mut self, record: &Record) -> Result<Wants, SinkError> {
        if record.path.as_str() == AUTO_CONF && matches!(record.kind, EntryKind::File { .. }) {
            self.held = Some((record.clone(), Vec::new()));
            return Ok(Wants::Body);
        }
        if record.path.as_str() == SIGNAL {
            // Written at the end; a backup never holds one (the server leaves it out).
            return Ok(Wants::Skip);
        }
        self.inner.record(record).await
    }

    async fn data(&mut self, chunk: Bytes) -> Result<Flow, SinkError> {
        if let Some((_, body)) = &mut self.held {
            if body.len() + chunk.len() > MAX_AUTO_CONF {
                return Err(SinkError::Refused(format!("{AUTO_CONF} is larger than {MAX_AUTO_CONF} bytes")));
            }
            body.extend_from_slice(&chunk);
            return Ok(Flow::Continue);
        }
        self.inner.data(chunk).await
    }

    async fn end_file(&mut self) -> Result<(), SinkError> {
        if let Some((mut record, mut body)) = self.held.take() {
            if !body.is_empty() && !body.ends_with(b"\n") {
                body.push(b'\n');
            }
            body.extend_from_slice(self.lines.as_bytes());
            record.kind = EntryKind::File { size: Some(body.len() as u64) };
            self.auto_conf_done = true;
            return self.emit(record, body).await;
        }
        self.inner.end_file().await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if !self.auto_conf_done {
            let body = format!("# Do not edit this file manually!\n{}", self.lines).into_bytes();
            self.emit(new_file(AUTO_CONF, body.len()), body).await?;
            self.auto_conf_done = true;
        }
        self.emit(new_file(SIGNAL, 0), Vec::new()).await?;
        self.inner.finish().await
    }

    async fn abort(&mut self, reason: &str) -> Result<(), SinkError> {
        self.inner.abort(reason).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_without_the_password_unless_asked() {
        let c = Config::parse("host=db.example.com port=5433 user=rep password=s3cr'et dbname=x").unwrap();
        let lines = recovery_lines(&c, Some("standby_1"), false).unwrap();
        assert!(lines.contains("primary_conninfo = '"), "{lines}");
        assert!(
            lines.contains("host=db.example.com")
                && lines.contains("port=5433")
                && lines.contains("user=rep")
        );
        assert!(!lines.contains("s3cr") && !lines.contains("dbname"), "{lines}");
        assert!(lines.contains("primary_slot_name = 'standby_1'"));
        let lines = recovery_lines(&c, None, true).unwrap();
        assert!(
            lines.contains("s3cr''''et") || lines.contains("s3cr\\\\''et") || lines.contains("s3cr"),
            "{lines}"
        );
    }

    #[test]
    fn guc_escaping() {
        assert_eq!(escape_guc(r"a'b\c"), r"a''b\\c");
    }
}
