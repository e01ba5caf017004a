//! The Plakar plugin binaries' option handling: the configuration map Plakar sends in `Init`
//! becomes validated options, with the same keys as the Go `postgresql` package
//! (`upstream-go.md` §3), and an unknown key is an error that names it and the valid ones.
//!
//! The binaries only parse and wire: the backup itself is [`backup_plan`], the Plakar side is
//! [`plakar_plugin`].

#![deny(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use pg_config::{Config, Password};

pub mod logical;
pub mod physical;

/// Keys every connector accepts (connection and TLS, tools directory).
pub const SHARED_KEYS: &[&str] = &[
    "location",
    "host",
    "port",
    "username",
    "password",
    "ssl_mode",
    "ssl_cert",
    "ssl_key",
    "ssl_root_cert",
    "ssl_cert_data",
    "ssl_key_data",
    "ssl_root_cert_data",
    "pg_bin_dir",
];

/// Keys of `postgresqlBinImporter` (`postgres+bin://`): the shared ones only.
pub const BIN_IMPORTER_KEYS: &[&str] = SHARED_KEYS;

/// The keys a connector accepts.
///
/// The logical connectors take [`pg_logical`]'s key sets, which parse them
/// ([`pg_logical::options`]); the physical one takes [`BIN_IMPORTER_KEYS`].
pub fn accepted_keys(connector: Connector) -> Vec<&'static str> {
    match connector {
        Connector::BinImporter => BIN_IMPORTER_KEYS.to_vec(),
        Connector::Importer => pg_logical::options::CONNECTION_KEYS
            .iter()
            .chain(pg_logical::options::BACKUP_KEYS)
            .copied()
            .collect(),
        Connector::Exporter => {
            let mut keys: Vec<&str> = pg_logical::options::CONNECTION_KEYS.to_vec();
            for k in pg_logical::options::RESTORE_KEYS {
                if !keys.contains(k) {
                    keys.push(k);
                }
            }
            keys
        }
    }
}

/// The three connectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Connector {
    /// `postgresqlImporter`, `postgres://`.
    Importer,
    /// `postgresqlBinImporter`, `postgres+bin://`.
    BinImporter,
    /// `postgresqlExporter`, `postgres://`.
    Exporter,
}

impl Connector {
    /// The executable's name.
    pub fn executable(self) -> &'static str {
        match self {
            Connector::Importer => "postgresqlImporter",
            Connector::BinImporter => "postgresqlBinImporter",
            Connector::Exporter => "postgresqlExporter",
        }
    }

    /// The schema file shipped next to it.
    pub fn schema_file(self) -> &'static str {
        match self {
            Connector::Importer => "postgresqlImporter.schema.json",
            Connector::BinImporter => "postgresqlBinImporter.schema.json",
            Connector::Exporter => "postgresqlExporter.schema.json",
        }
    }
}

/// The configuration map with empty values dropped (the Go plugin treats `""` as unset),
/// checked against the connector's keys.
#[derive(Clone, Debug)]
pub struct ConfigMap(BTreeMap<String, String>);

impl ConfigMap {
    /// Checks the keys: an unknown one is an error naming it and listing the valid ones.
    pub fn new(config: BTreeMap<String, String>, connector: Connector) -> Result<Self, String> {
        let keys = accepted_keys(connector);
        let mut unknown: Vec<&str> =
            config.keys().map(String::as_str).filter(|k| !keys.contains(k)).collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            let mut valid = keys.clone();
            valid.sort_unstable();
            let plural = if unknown.len() == 1 { "option" } else { "options" };
            return Err(format!(
                "unknown {plural} {} for {}; valid options: {}",
                unknown.iter().map(|k| format!("{k:?}")).collect::<Vec<_>>().join(", "),
                connector.executable(),
                valid.join(", ")
            ));
        }
        Ok(Self(config.into_iter().filter(|(_, v)| !v.is_empty()).collect()))
    }

    /// A value (empty values count as unset).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A boolean with Go's `strconv.ParseBool` spellings.
    pub fn bool(&self, key: &str) -> Result<bool, String> {
        match self.get(key) {
            None => Ok(false),
            Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
            Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
            Some(v) => Err(format!("{key}: {v:?} is not a boolean (true or false)")),
        }
    }
}

/// Files written for the `ssl_*_data` options (inline PEM), in a private directory removed when
/// this is dropped (and swept at the next start if the process was killed).
#[derive(Debug, Default)]
pub struct InlineFiles {
    dir: Option<PathBuf>,
}

impl Drop for InlineFiles {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

fn private_root() -> PathBuf {
    std::env::temp_dir().join(format!("plakar-postgresql-{}", nix_uid()))
}

fn nix_uid() -> u32 {
    std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(0)
}

/// Removes private directories left by killed plugin processes (their PID is gone).
pub fn sweep_stale_files() {
    let Ok(rd) = std::fs::read_dir(private_root()) else { return };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let pid = name.split('-').next().and_then(|p| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl InlineFiles {
    fn write(&mut self, name: &str, contents: &str) -> Result<PathBuf, String> {
        if self.dir.is_none() {
            let root = private_root();
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&root)
                .map_err(|e| format!("creating {}: {e}", root.display()))?;
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = root.join(format!("{}-{nanos}", std::process::id()));
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            self.dir = Some(dir);
        }
        let path = self.dir.as_ref().expect("set above").join(name);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        f.write_all(contents.as_bytes()).map_err(|e| format!("writing {}: {e}", path.display()))?;
        Ok(path)
    }
}

/// What the shared options resolve to.
#[derive(Debug)]
pub struct Connection {
    /// The kind of backup the location asks for and its connection configuration.
    pub location: backup_plan::Location,
    /// Files behind `ssl_*_data` (keep them while connecting).
    pub inline_files: InlineFiles,
    /// `pg_bin_dir`.
    pub pg_bin_dir: Option<PathBuf>,
}

impl Connection {
    /// `host:port` of the first host, as Plakar's `origin` (unique per cluster).
    pub fn origin(&self) -> Result<String, String> {
        let resolved = self.location.config.resolve().map_err(|e| format!("connection settings: {e}"))?;
        Ok(resolved
            .targets
            .first()
            .map(|t| format!("{}:{}", t.host_text(), t.port))
            .unwrap_or_else(|| format!("{}:{}", pg_config::DEFAULT_HOST, pg_config::DEFAULT_PORT)))
    }
}

/// Builds the connection from `location` and the standalone keys, which override the URI's
/// parts (as in the Go plugin).
pub fn connection(map: &ConfigMap, kind: backup_plan::Kind) -> Result<Connection, String> {
    let text =
        map.get("location").ok_or("the location option is missing (postgres://… or postgres+bin://…)")?;
    let mut location = backup_plan::Location::parse(text, Some(kind))
        .map_err(|e| format!("invalid location: {}", backup_plan::chain(&e)))?;
    if location.kind != kind {
        return Err(format!(
            "invalid location: this connector takes {} locations",
            match kind {
                backup_plan::Kind::Physical => "postgres+bin://",
                backup_plan::Kind::Logical => "postgres://",
            }
        ));
    }
    let config: &mut Config = &mut location.config;
    let set = |config: &mut Config, keyword: &str, key: &str, value: &str| {
        config.set_keyword(keyword, value).map_err(|e| format!("{key}: {e}"))
    };
    if let Some(v) = map.get("host") {
        set(config, "host", "host", v)?;
    }
    if let Some(v) = map.get("port") {
        let port: u16 = v.parse().map_err(|_| format!("port: {v:?} is not a port number"))?;
        set(config, "port", "port", &port.to_string())?;
    }
    if let Some(v) = map.get("username") {
        config.set_user(v).map_err(|e| format!("username: {e}"))?;
    }
    if let Some(v) = map.get("password") {
        config.set_password(Password::new(v));
    }
    if let Some(v) = map.get("ssl_mode") {
        const MODES: &[&str] = &["disable", "allow", "prefer", "require", "verify-ca", "verify-full"];
        if !MODES.contains(&v) {
            return Err(format!("ssl_mode: {v:?} is not one of {}", MODES.join(", ")));
        }
        set(config, "sslmode", "ssl_mode", v)?;
    }
    let mut inline_files = InlineFiles::default();
    for (key, keyword) in [("ssl_cert", "sslcert"), ("ssl_key", "sslkey"), ("ssl_root_cert", "sslrootcert")] {
        let data_key = format!("{key}_data");
        match (map.get(key), map.get(&data_key)) {
            (Some(_), Some(_)) => return Err(format!("{key} and {data_key} are mutually exclusive")),
            (Some(path), None) => set(config, keyword, key, path)?,
            (None, Some(pem)) => {
                let path = inline_files.write(keyword, pem)?;
                set(config, keyword, &data_key, &path.to_string_lossy())?;
            }
            (None, None) => {}
        }
    }
    Ok(Connection { location, inline_files, pg_bin_dir: map.get("pg_bin_dir").map(PathBuf::from) })
}

#[cfg(test)]
mod tests;
