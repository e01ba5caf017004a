//! `BASE_BACKUP` options and the command text in the syntax of each server major.
//!
//! PostgreSQL 12–14 accept only the legacy keyword syntax, 15+ only the parenthesised one
//! (protocol-replication.html, `BASE_BACKUP`; `repl_gram.y` of each branch). Option keywords of
//! the legacy syntax must be upper case; literals are plain `'…'` strings with `''` doubling and
//! no `E'…'` form (the replication lexer has none).

use std::fmt::Write;

use pg_wire::replication::quote_label;

/// When the server's backup-start checkpoint happens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Checkpoint {
    /// As fast as possible (`pg_basebackup -c fast`).
    #[default]
    Fast,
    /// Spread over `checkpoint_completion_target` (`-c spread`).
    Spread,
}

/// How the WAL needed to make the backup consistent reaches the backup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum WalMethod {
    /// The server appends it to the main archive at the end (`-X fetch`), protected meanwhile
    /// by a temporary replication slot.
    #[default]
    Fetch,
    /// A second replication connection streams it during the backup (`-X stream`).
    Stream,
    /// Not included: the backup is only usable with a WAL archive.
    None,
}

/// Server-side compression (PostgreSQL 15+); the client decompresses, so stored files stay
/// deduplicable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip, optionally with a level 1–9.
    Gzip(Option<u8>),
    /// LZ4.
    Lz4,
    /// Zstandard, optionally with a level.
    Zstd(Option<i8>),
}

/// Checksum algorithm of the backup manifest (13+): the manifest crate's own type.
pub use pg_backup_manifest::ChecksumAlgorithm as ManifestChecksums;

/// Options of a physical backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupOptions {
    /// The backup label (in `backup_label`).
    pub label: String,
    /// Checkpoint mode.
    pub checkpoint: Checkpoint,
    /// Transfer rate limit in kB/s (32..=1048576), `None` for no limit.
    pub max_rate: Option<u32>,
    /// WAL method.
    pub wal_method: WalMethod,
    /// Server-side compression (15+).
    pub compression: Compression,
    /// Verify page checksums while reading (the server's default).
    pub verify_checksums: bool,
    /// Manifest checksum algorithm (13+).
    pub manifest_checksums: ManifestChecksums,
    /// A permanent replication slot for the WAL streaming connection of [`WalMethod::Stream`]
    /// instead of a temporary one (`pg_basebackup -S`): the slot keeps the WAL a standby made
    /// from this backup needs.
    pub slot: Option<String>,
    /// Create [`BackupOptions::slot`] first (`pg_basebackup -C`); it stays after the backup.
    pub create_slot: bool,
}

impl Default for BackupOptions {
    fn default() -> Self {
        Self {
            label: "pg_plakar base backup".into(),
            checkpoint: Checkpoint::Fast,
            max_rate: None,
            wal_method: WalMethod::Fetch,
            compression: Compression::None,
            verify_checksums: true,
            manifest_checksums: ManifestChecksums::Crc32c,
            slot: None,
            create_slot: false,
        }
    }
}

/// Options that the server cannot honour, found before anything is sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    /// A label with a character the replication grammar or `backup_label` cannot carry.
    #[error("the backup label cannot contain {0}")]
    Label(&'static str),
    /// MAX_RATE out of the server's range.
    #[error("max_rate {0} kB/s is outside the valid range 32..1048576")]
    MaxRate(u32),
    /// Server-side compression needs PostgreSQL 15.
    #[error("server-side compression needs PostgreSQL 15 or later (the server is {0})")]
    CompressionNeeds15(u32),
    /// Compression level out of range.
    #[error("{0}")]
    Level(String),
    /// The server major is not supported.
    #[error("PostgreSQL {0} is not supported (12 to 18 are)")]
    Version(u32),
    /// A replication slot option that cannot be used as given.
    #[error("{0}")]
    Slot(String),
}

impl BackupOptions {
    /// Checks what needs no server (label, rate, compression levels): called before
    /// connecting, so a bad option costs no connection.
    pub fn check(&self) -> Result<(), OptionError> {
        if self.label.contains('\0') {
            return Err(OptionError::Label("a NUL byte"));
        }
        if self.label.contains(['\n', '\r']) {
            return Err(OptionError::Label("a line break (it would break backup_label)"));
        }
        if self.label.len() >= 1024 {
            return Err(OptionError::Label("more than 1023 bytes"));
        }
        if let Some(rate) = self.max_rate
            && !(32..=1_048_576).contains(&rate)
        {
            return Err(OptionError::MaxRate(rate));
        }
        match self.compression {
            Compression::Gzip(Some(l)) if !(1..=9).contains(&l) => {
                return Err(OptionError::Level(format!("gzip level {l} is outside 1..9")));
            }
            Compression::Zstd(Some(l)) if !(-7..=22).contains(&l) => {
                return Err(OptionError::Level(format!("zstd level {l} is outside -7..22")));
            }
            _ => {}
        }
        if let Some(slot) = &self.slot {
            if self.wal_method != WalMethod::Stream {
                return Err(OptionError::Slot(
                    "a replication slot can only be used with WAL streaming (-X stream)".into(),
                ));
            }
            let valid = !slot.is_empty()
                && slot.len() < 64
                && slot.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
            if !valid {
                return Err(OptionError::Slot(format!(
                    "replication slot name {slot:?} is invalid: 1 to 63 lower-case letters, digits and underscores"
                )));
            }
        } else if self.create_slot {
            return Err(OptionError::Slot("creating a slot needs its name (--slot)".into()));
        }
        Ok(())
    }

    /// Checks the options against a server major before anything is sent.
    pub fn validate(&self, major: u32) -> Result<(), OptionError> {
        if !(12..=18).contains(&major) {
            return Err(OptionError::Version(major));
        }
        self.check()?;
        if self.compression != Compression::None && major < 15 {
            return Err(OptionError::CompressionNeeds15(major));
        }
        Ok(())
    }

    /// The `BASE_BACKUP` command for a server of major version `major` (validate first).
    ///
    /// `PROGRESS` is always asked for (it fills the tablespace sizes); `WAIT` is off whenever
    /// WAL is included, as pg_basebackup does; a manifest is requested from 13 on; no
    /// `TABLESPACE_MAP`, so tablespaces come as `pg_tblspc` links that a restore can point at
    /// the restored copies.
    pub fn command(&self, major: u32) -> String {
        // `validate` refused what cannot be quoted.
        let label = quote_label(&self.label).unwrap_or_else(|_| "'pg_plakar base backup'".into());
        let manifest = major >= 13;
        let fetch = self.wal_method == WalMethod::Fetch;
        let wal_included = self.wal_method != WalMethod::None;
        let mut c = String::from("BASE_BACKUP");
        if major >= 15 {
            let mut opts: Vec<String> = vec![format!("LABEL {label}"), "PROGRESS".into()];
            if fetch {
                opts.push("WAL".into());
            }
            opts.push(match self.checkpoint {
                Checkpoint::Fast => "CHECKPOINT 'fast'".into(),
                Checkpoint::Spread => "CHECKPOINT 'spread'".into(),
            });
            if wal_included {
                opts.push("WAIT 0".into());
            }
            if let Some(rate) = self.max_rate {
                opts.push(format!("MAX_RATE {rate}"));
            }
            if !self.verify_checksums {
                opts.push("VERIFY_CHECKSUMS 0".into());
            }
            opts.push("MANIFEST 'yes'".into());
            opts.push(format!("MANIFEST_CHECKSUMS '{}'", self.manifest_checksums.name()));
            opts.push("TARGET 'client'".into());
            match self.compression {
                Compression::None => {}
                Compression::Gzip(level) => {
                    opts.push("COMPRESSION 'gzip'".into());
                    if let Some(l) = level {
                        opts.push(format!("COMPRESSION_DETAIL 'level={l}'"));
                    }
                }
                Compression::Lz4 => opts.push("COMPRESSION 'lz4'".into()),
                Compression::Zstd(level) => {
                    opts.push("COMPRESSION 'zstd'".into());
                    if let Some(l) = level {
                        opts.push(format!("COMPRESSION_DETAIL 'level={l}'"));
                    }
                }
            }
            let _ = write!(c, " ( {} )", opts.join(", "));
        } else {
            let _ = write!(c, " LABEL {label} PROGRESS");
            if self.checkpoint == Checkpoint::Fast {
                c.push_str(" FAST");
            }
            if fetch {
                c.push_str(" WAL");
            }
            if wal_included {
                c.push_str(" NOWAIT");
            }
            if let Some(rate) = self.max_rate {
                let _ = write!(c, " MAX_RATE {rate}");
            }
            if !self.verify_checksums {
                c.push_str(" NOVERIFY_CHECKSUMS");
            }
            if manifest {
                let _ = write!(c, " MANIFEST 'yes' MANIFEST_CHECKSUMS '{}'", self.manifest_checksums.name());
            }
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_syntax_for_12_to_14() {
        let o = BackupOptions { label: "it's".into(), ..Default::default() };
        assert_eq!(o.command(12), "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT");
        assert_eq!(
            o.command(14),
            "BASE_BACKUP LABEL 'it''s' PROGRESS FAST WAL NOWAIT MANIFEST 'yes' MANIFEST_CHECKSUMS 'CRC32C'"
        );
        let o = BackupOptions {
            checkpoint: Checkpoint::Spread,
            wal_method: WalMethod::Stream,
            max_rate: Some(20480),
            verify_checksums: false,
            manifest_checksums: ManifestChecksums::Sha256,
            ..Default::default()
        };
        assert_eq!(
            o.command(13),
            "BASE_BACKUP LABEL 'pg_plakar base backup' PROGRESS NOWAIT MAX_RATE 20480 NOVERIFY_CHECKSUMS \
             MANIFEST 'yes' MANIFEST_CHECKSUMS 'SHA256'"
        );
    }

    #[test]
    fn parenthesised_syntax_for_15_and_later() {
        let o = BackupOptions {
            label: r"C:\x".into(),
            compression: Compression::Zstd(Some(3)),
            ..Default::default()
        };
        assert_eq!(
            o.command(15),
            r"BASE_BACKUP ( LABEL 'C:\x', PROGRESS, WAL, CHECKPOINT 'fast', WAIT 0, MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client', COMPRESSION 'zstd', COMPRESSION_DETAIL 'level=3' )"
        );
        let o = BackupOptions {
            wal_method: WalMethod::None,
            checkpoint: Checkpoint::Spread,
            ..Default::default()
        };
        assert_eq!(
            o.command(18),
            "BASE_BACKUP ( LABEL 'pg_plakar base backup', PROGRESS, CHECKPOINT 'spread', MANIFEST 'yes', MANIFEST_CHECKSUMS 'CRC32C', TARGET 'client' )"
        );
    }

    #[test]
    fn validation() {
        let ok = BackupOptions::default();
        assert_eq!(ok.validate(11), Err(OptionError::Version(11)));
        assert!(ok.validate(12).is_ok() && ok.validate(18).is_ok());
        let bad = |o: BackupOptions, major| o.validate(major).unwrap_err().to_string();
        assert_eq!(
            bad(BackupOptions { label: "a\nb".into(), ..ok.clone() }, 15),
            "the backup label cannot contain a line break (it would break backup_label)"
        );
        assert_eq!(
            bad(BackupOptions { label: "a\0b".into(), ..ok.clone() }, 15),
            "the backup label cannot contain a NUL byte"
        );
        assert_eq!(
            bad(BackupOptions { max_rate: Some(10), ..ok.clone() }, 15),
            "max_rate 10 kB/s is outside the valid range 32..1048576"
        );
        assert_eq!(
            bad(BackupOptions { compression: Compression::Lz4, ..ok.clone() }, 14),
            "server-side compression needs PostgreSQL 15 or later (the server is 14)"
        );
        assert_eq!(
            bad(BackupOptions { compression: Compression::Gzip(Some(0)), ..ok.clone() }, 16),
            "gzip level 0 is outside 1..9"
        );
    }

    #[test]
    fn slots_need_streaming_and_a_plain_name() {
        let stream = BackupOptions { wal_method: WalMethod::Stream, ..Default::default() };
        let with = |slot: &str, create| BackupOptions {
            slot: Some(slot.into()),
            create_slot: create,
            ..stream.clone()
        };
        assert!(with("standby_1", true).check().is_ok());
        assert!(with("Bad-Name", false).check().unwrap_err().to_string().contains("is invalid"));
        assert!(with(&"x".repeat(64), false).check().is_err());
        let fetch = BackupOptions { slot: Some("s".into()), ..Default::default() };
        assert!(fetch.check().unwrap_err().to_string().contains("-X stream"));
        let nameless = BackupOptions { create_slot: true, ..stream.clone() };
        assert!(nameless.check().unwrap_err().to_string().contains("--slot"));
        // The slot does not change the BASE_BACKUP command.
        assert_eq!(
            with("s", true).command(17),
            BackupOptions { wal_method: WalMethod::Stream, ..Default::default() }.command(17)
        );
    }
}
