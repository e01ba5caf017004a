//! How long a backup waits for a server that sends nothing.
//!
//! A connection that stops moving (a stalled proxy, a dead network path, a frozen server) must
//! not hang a backup forever while the server keeps its temporary slot and the WAL it holds
//! back. Every connection of a backup therefore runs with a read-inactivity timeout
//! ([`RunOptions::read_timeout`](crate::RunOptions::read_timeout), [`DEFAULT_READ_TIMEOUT`] by
//! default): a read that waits longer than that for a byte fails the backup, which then drops
//! its connections (the server drops the temporary slots with them) and its WAL spool.
//!
//! Where the server is rightly silent, the limit is stretched or the silence is broken:
//! - **connecting**: without an explicit `connect_timeout` (or `PGCONNECT_TIMEOUT`) the read
//!   timeout is used as the connect timeout;
//! - **the starting checkpoint** (between `BASE_BACKUP` and its first result set the server
//!   runs a checkpoint and sizes the tablespaces, and sends nothing): the limit is the read
//!   timeout plus the server's `checkpoint_timeout` (a fast checkpoint), or plus twice that (a
//!   spread one, which may first wait for the checkpoint already running);
//! - **the WAL stream** of stream mode: an idle server sends no WAL, so every standby status
//!   update asks for a reply (the server answers at once with a keepalive), sent at least
//!   every [`status_interval`], well within the timeout.
//!
//! The clock runs only while a read waits: time spent by a slow sink (backpressure) never
//! counts. Keepalives and `tcp_user_timeout` (applied by `pg-conn` to every socket) catch a dead
//! path at the TCP level too, whatever the phase.

use std::time::Duration;

use pg_config::{Config, Param};

/// The default read-inactivity timeout: as long as the server's own default
/// `wal_sender_timeout`, after which a walsender gives up on a silent client.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the WAL receiver sends a standby status update when nothing asks for one
/// (`pg_basebackup --status-interval` defaults to 10 s).
const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// The interval of standby status updates under `read_timeout`: at most 10 s, and at most a
/// third of the timeout, so the server's replies keep the stream alive.
pub(crate) fn status_interval(read_timeout: Option<Duration>) -> Duration {
    match read_timeout {
        Some(t) => STATUS_INTERVAL.min(t / 3).max(Duration::from_millis(50)),
        None => STATUS_INTERVAL,
    }
}

/// The limit while the server runs the backup's starting checkpoint.
pub(crate) fn start_limit(read_timeout: Duration, checkpoint_timeout: Duration, spread: bool) -> Duration {
    read_timeout + checkpoint_timeout * if spread { 2 } else { 1 }
}

/// `config` with `connect_timeout` set to `limit` unless the user set one (in the connection
/// string or `PGCONNECT_TIMEOUT`).
pub(crate) fn with_connect_timeout(config: &Config, limit: Option<Duration>) -> Config {
    let mut config = config.clone();
    if let Some(limit) = limit
        && !config.is_set(Param::ConnectTimeout)
        && std::env::var_os("PGCONNECT_TIMEOUT").is_none()
    {
        // libpq counts in whole seconds, at least 2.
        let secs = limit.as_secs().max(2);
        config.set(Param::ConnectTimeout, secs.to_string()).expect("an integer is a valid connect_timeout");
    }
    config
}

/// Parses a time setting as `SHOW` prints it (`30s`, `5min`, `1h`, `1d`, `500ms`).
pub(crate) fn parse_setting(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings() {
        assert_eq!(parse_setting("5min"), Some(Duration::from_secs(300)));
        assert_eq!(parse_setting("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_setting("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_setting("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_setting("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_setting("5 weeks"), None);
        assert_eq!(parse_setting(""), None);
        // Overflow is an error, never a wrapped value (issue 13).
        assert_eq!(parse_setting("18446744073709551615min"), None);
        assert_eq!(parse_setting("18446744073709551616ms"), None);
        assert_eq!(parse_setting("213503982334601d"), None);
    }

    #[test]
    fn intervals_and_limits() {
        assert_eq!(status_interval(None), Duration::from_secs(10));
        assert_eq!(status_interval(Some(DEFAULT_READ_TIMEOUT)), Duration::from_secs(10));
        assert_eq!(status_interval(Some(Duration::from_secs(3))), Duration::from_secs(1));
        let min = Duration::from_secs(60);
        assert_eq!(start_limit(min, 5 * min, false), 6 * min);
        assert_eq!(start_limit(min, 5 * min, true), 11 * min);
    }

    #[test]
    fn connect_timeout_only_when_unset() {
        let c = Config::parse("host=h").unwrap();
        let c = with_connect_timeout(&c, Some(Duration::from_secs(60)));
        if std::env::var_os("PGCONNECT_TIMEOUT").is_none() {
            assert_eq!(c.get(Param::ConnectTimeout), Some("60"));
        }
        let c = Config::parse("host=h connect_timeout=7").unwrap();
        assert_eq!(
            with_connect_timeout(&c, Some(Duration::from_secs(60))).get(Param::ConnectTimeout),
            Some("7")
        );
        let c = Config::parse("host=h").unwrap();
        assert_eq!(with_connect_timeout(&c, None).get(Param::ConnectTimeout), None);
    }
}
