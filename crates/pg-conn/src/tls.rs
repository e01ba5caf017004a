//! TLS for PostgreSQL connections on rustls, with libpq's `sslmode` semantics.
//!
//! | sslmode | what is checked |
//! |---|---|
//! | `prefer`, `require` | nothing about the certificate (handshake signatures still are); with `require`, a root CA file makes it `verify-ca`, as in libpq |
//! | `verify-ca` | the chain, against the root CA file; not the host name |
//! | `verify-full` | the chain and the host name (DNS or IP SAN) |
//!
//! The `tls-server-end-point` channel-binding data for SCRAM-SHA-256-PLUS is the hash of the
//! server's leaf certificate, with the hash chosen from the certificate's signature algorithm
//! (RFC 5929 §4.1; PostgreSQL `be_tls_get_certificate_hash`): MD5 and SHA-1 become SHA-256,
//! SHA-224/256/384/512 stay as they are, and anything else (Ed25519, RSA-PSS) has no binding.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sha2::Digest;

/// How much of the server's certificate to check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verification {
    /// Accept any certificate (`prefer`, `require` without a root CA).
    None,
    /// Check the chain against the root CAs, not the host name (`verify-ca`).
    Chain,
    /// Check the chain and the host name (`verify-full`).
    Full,
}

/// What a TLS connection needs to know.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// How much to verify.
    pub verification: Verification,
    /// PEM file of trusted root certificates (`sslrootcert`). Required for `Chain` and `Full`.
    pub root_cert: Option<PathBuf>,
    /// PEM client certificate chain (`sslcert`) and private key (`sslkey`).
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Send SNI for DNS host names (`sslsni`, default on).
    pub sni: bool,
}

/// A TLS set-up problem, before or during the handshake.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate or key file could not be read.
    #[error("cannot read {what} file {path}: {error}")]
    File {
        /// Which file (`root certificate`, `client certificate`, `client key`).
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// A certificate or key file is not usable.
    #[error("{what} file {path}: {reason}")]
    Invalid {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Verification needs a root certificate and none was given.
    #[error("sslmode {mode} needs a root certificate: set sslrootcert (or put root.crt in ~/.postgresql/)")]
    NoRootCert {
        /// `verify-ca` or `verify-full`.
        mode: &'static str,
    },
    /// The host name cannot be used as a TLS server name.
    #[error("invalid host name for TLS: {0:?}")]
    ServerName(String),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        Self::Config(e)
    }
}

/// The crypto provider every connection uses (ring).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let algorithms = provider.signature_verification_algorithms;
    let builder =
        ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let roots = match &options.root_cert {
        Some(path) => Some(load_roots(path)?),
        None => None,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match (options.verification, roots) {
        (Verification::None, _) => Arc::new(AcceptAnyCertificate { algorithms }),
        (Verification::Chain, Some(roots)) => Arc::new(ChainOnly { roots: Arc::new(roots), algorithms }),
        (Verification::Full, Some(roots)) => {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?
        }
        (Verification::Chain, None) => return Err(TlsError::NoRootCert { mode: "verify-ca" }),
        (Verification::Full, None) => return Err(TlsError::NoRootCert { mode: "verify-full" }),
    };
    let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
    let mut config = match &options.client_cert {
        Some((cert, key)) => {
            let chain = load_certs(cert, "client certificate")?;
            let key = load_key(key)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    config.enable_sni = options.sni;
    Ok(config)
}

/// The TLS server name for `host` (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

fn read(path: &Path, what: &'static str) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|error| TlsError::File { what, path: path.to_owned(), error })
}

fn load_certs(path: &Path, what: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Invalid { what, path: path.to_owned(), reason: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsError::Invalid { what, path: path.to_owned(), reason: "no certificate in it".into() });
    }
    Ok(certs)
}

fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    const WHAT: &str = "root certificate";
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path, WHAT)? {
        roots.add(cert).map_err(|e| TlsError::Invalid {
            what: WHAT,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// Loads a client key (PKCS#1, PKCS#8 or SEC1 PEM) after libpq's permission check: the file must
/// not be readable by group or others, except 0640 when owned by root.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    const WHAT: &str = "client key";
    let meta =
        fs::metadata(path).map_err(|error| TlsError::File { what: WHAT, path: path.to_owned(), error })?;
    let mode = meta.mode() & 0o777;
    let too_open = if meta.uid() == 0 { mode & 0o037 != 0 } else { mode & 0o077 != 0 };
    if too_open {
        return Err(TlsError::Invalid {
            what: WHAT,
            path: path.to_owned(),
            reason: format!(
                "has group or world access (mode {mode:04o}); permissions should be u=rw (0600) or less"
            ),
        });
    }
    let pem = read(path, WHAT)?;
    if pem.windows(b"ENCRYPTED".len()).any(|w| w == b"ENCRYPTED") {
        return Err(TlsError::Invalid {
            what: WHAT,
            path: path.to_owned(),
            reason: "is encrypted, which is not supported; decrypt it (openssl pkey -in key -out key.plain)"
                .into(),
        });
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::Invalid {
        what: WHAT,
        path: path.to_owned(),
        reason: format!("no PKCS#1, PKCS#8 or SEC1 private key found ({e})"),
    })
}

/// `prefer` / `require`: no certificate check, but the handshake signatures are still verified
/// so the session key really belongs to whoever holds the presented certificate.
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

/// `verify-ca`: the chain up to a trusted root, without the host name.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

macro_rules! signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algorithms.supported_schemes()
        }
    };
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    signature_checks!();
}

/// The `tls-server-end-point` channel-binding data for a server leaf certificate, or `None`
/// when its signature algorithm defines no binding.
pub fn channel_binding_data(leaf: &CertificateDer<'_>) -> Option<Vec<u8>> {
    use x509_cert::der::Decode;
    let cert = x509_cert::Certificate::from_der(leaf.as_ref()).ok()?;
    let oid = cert.signature_algorithm.oid.to_string();
    let hash = match oid.as_str() {
        // md5WithRSA, sha1WithRSA, ecdsa-with-SHA1, dsa-with-SHA1: RFC 5929 says SHA-256.
        "1.2.840.113549.1.1.4" | "1.2.840.113549.1.1.5" | "1.2.840.10045.4.1" | "1.2.840.10040.4.3" => {
            Hash::Sha256
        }
        "1.2.840.113549.1.1.14" | "1.2.840.10045.4.3.1" | "2.16.840.1.101.3.4.3.1" => Hash::Sha224,
        "1.2.840.113549.1.1.11" | "1.2.840.10045.4.3.2" | "2.16.840.1.101.3.4.3.2" => Hash::Sha256,
        "1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3" => Hash::Sha384,
        "1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4" => Hash::Sha512,
        _ => return None,
    };
    let der = leaf.as_ref();
    Some(match hash {
        Hash::Sha224 => sha2::Sha224::digest(der).to_vec(),
        Hash::Sha256 => sha2::Sha256::digest(der).to_vec(),
        Hash::Sha384 => sha2::Sha384::digest(der).to_vec(),
        Hash::Sha512 => sha2::Sha512::digest(der).to_vec(),
    })
}

enum Hash {
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(dir: &Path, name: &str, content: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn channel_binding_follows_the_signature_algorithm() {
        let ecdsa = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&ecdsa).unwrap();
        let der = cert.der();
        assert_eq!(channel_binding_data(der).unwrap(), sha2::Sha384::digest(der.as_ref()).to_vec());

        let p256 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert =
            rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&p256).unwrap();
        assert_eq!(channel_binding_data(cert.der()).unwrap().len(), 32);

        let ed = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&ed).unwrap();
        assert_eq!(channel_binding_data(cert.der()), None, "Ed25519 defines no tls-server-end-point hash");
        assert_eq!(channel_binding_data(&CertificateDer::from(vec![1, 2, 3])), None);
    }

    #[test]
    fn client_key_permissions_and_formats() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let open = write(dir.path(), "open.key", &key.serialize_pem(), 0o644);
        let err = load_key(&open).unwrap_err().to_string();
        assert!(err.contains("group or world access (mode 0644)"), "{err}");
        let ok = write(dir.path(), "ok.key", &key.serialize_pem(), 0o600);
        assert!(matches!(load_key(&ok).unwrap(), PrivateKeyDer::Pkcs8(_)));
        let enc = write(
            dir.path(),
            "enc.key",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            0o600,
        );
        assert!(load_key(&enc).unwrap_err().to_string().contains("is encrypted"));
        let missing = load_key(&dir.path().join("nope")).unwrap_err().to_string();
        assert!(missing.starts_with("cannot read client key file"), "{missing}");
    }

    #[test]
    fn verification_needs_a_root_certificate() {
        for (v, mode) in [(Verification::Chain, "verify-ca"), (Verification::Full, "verify-full")] {
            let opts = TlsOptions { verification: v, root_cert: None, client_cert: None, sni: true };
            let err = client_config(&opts).unwrap_err().to_string();
            assert!(err.starts_with(&format!("sslmode {mode} needs a root certificate")), "{err}");
        }
        let opts =
            TlsOptions { verification: Verification::None, root_cert: None, client_cert: None, sni: true };
        assert!(client_config(&opts).is_ok());
    }
}
