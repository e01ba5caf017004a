//! TLS material for a test cluster, generated with `rcgen`: a CA, a server certificate
//! (SANs `localhost` and `127.0.0.1`) and one client certificate per user (CN = user name),
//! all X.509 v3 (PostgreSQL docs "Secure TCP/IP Connections with SSL", §18.9).

use std::fs;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};

use crate::error::{Result, io};

/// Paths of the generated files.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub(crate) ca_cert: PathBuf,
    pub(crate) server_cert: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) dir: PathBuf,
}

impl TlsFiles {
    /// `(certificate, key)` of `user`'s client certificate.
    pub(crate) fn client(&self, user: &str) -> (PathBuf, PathBuf) {
        (self.dir.join(format!("client-{user}.crt")), self.dir.join(format!("client-{user}.key")))
    }
}

/// Writes the CA, the server's pair (key owned by `server_ids`, mode 0600) and client pairs for
/// `users` (keys owned by the test process, mode 0600) into `dir`.
pub(crate) fn generate(dir: &Path, users: &[&str], server_ids: (u32, u32)) -> Result<TlsFiles> {
    fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.distinguished_name.push(DnType::CommonName, "pg-testkit CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let files = TlsFiles {
        ca_cert: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        dir: dir.to_path_buf(),
    };
    write(&files.ca_cert, &ca_cert.pem(), 0o644)?;

    let mut params = CertificateParams::new(vec!["localhost".to_string()])?;
    params.subject_alt_names.push(SanType::IpAddress([127, 0, 0, 1].into()));
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write(&files.server_cert, &cert.pem(), 0o644)?;
    write(&files.server_key, &key.serialize_pem(), 0o600)?;
    std::os::unix::fs::chown(&files.server_key, Some(server_ids.0), Some(server_ids.1))
        .map_err(io(format!("chown {}", files.server_key.display())))?;

    for user in users {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, *user);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let (cert_path, key_path) = files.client(user);
        write(&cert_path, &cert.pem(), 0o644)?;
        write(&key_path, &key.serialize_pem(), 0o600)?;
    }
    Ok(files)
}

fn write(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let what = || format!("writing {}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(io(what()))?;
    std::io::Write::write_all(&mut file, contents.as_bytes()).map_err(io(what()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io(what()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_every_file_with_private_keys() {
        let dir = std::env::temp_dir().join(format!("pg-testkit-tls-unit-{}", std::process::id()));
        let ids = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
        let files = generate(&dir, &["alice", "postgres"], ids).unwrap();
        for path in [&files.ca_cert, &files.server_cert] {
            assert!(fs::read_to_string(path).unwrap().starts_with("-----BEGIN CERTIFICATE-----"));
        }
        let mode = fs::metadata(&files.server_key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (cert, key) = files.client("alice");
        assert!(cert.is_file());
        assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        fs::remove_dir_all(&dir).unwrap();
    }
}
