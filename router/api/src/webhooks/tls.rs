//! Trust for webhooks over HTTPS: the system's root certificates plus the operator's extra CA files
//! (`--webhook-ca-file`), as one rustls client configuration shared by every attempt.
//!
//! The system's roots are read once per process, on first use: reading them walks the OS trust
//! store, which is too slow for every engine a test or a process builds.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The ALPN protocol offered: the engine speaks HTTP/1.1 only, and a receiver that would pick h2
/// must know it cannot.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The TLS client configuration of webhook attempts; cheap to clone (shared). The default trusts
/// the system's roots only.
#[derive(Clone)]
pub struct Tls(Arc<rustls::ClientConfig>);

/// Why a CA file was refused (at start: the process does not run with a trust it was not given).
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid PEM.
    #[error("{} is not a valid PEM file", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// The file holds no `CERTIFICATE` block.
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate of the file cannot be a trust anchor (it does not parse as X.509).
    #[error("{} holds a certificate that cannot be trusted as a CA", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: rustls::Error,
    },
}

impl Tls {
    /// Trusts the system's roots only (read once per process; none is not an error: a warning is
    /// logged, and only `https://` receivers then fail).
    pub fn system() -> Self {
        static SYSTEM: OnceLock<Tls> = OnceLock::new();
        SYSTEM
            .get_or_init(|| Tls::from_roots(system_roots().clone()))
            .clone()
    }

    /// Trusts the system's roots and the CA certificates of `paths` (PEM files, each with at least
    /// one certificate).
    pub fn with_ca_files(paths: &[PathBuf]) -> Result<Self, CaFileError> {
        if paths.is_empty() {
            return Ok(Tls::system());
        }
        let mut roots = system_roots().clone();
        add_ca_files(&mut roots, paths)?;
        Ok(Tls::from_roots(roots))
    }

    /// Checks the CA files as [`Tls::with_ca_files`] would, without reading the system's roots:
    /// configuration is checked before logging is set up, and the warning that no system roots
    /// were found must not be lost.
    pub fn check_ca_files(paths: &[PathBuf]) -> Result<(), CaFileError> {
        add_ca_files(&mut RootCertStore::empty(), paths)
    }

    /// Trusts exactly `roots`, not the system's (for tests, and for processes that pin their
    /// receivers' CAs).
    pub fn from_roots(roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        #[expect(
            clippy::expect_used,
            reason = "the ring provider supports both default protocol versions: this cannot fail"
        )]
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports TLS 1.2 and 1.3");
        let mut config = builder.with_root_certificates(roots).with_no_client_auth();
        config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Tls(Arc::new(config))
    }

    /// A connector for one attempt.
    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(Arc::clone(&self.0))
    }
}

impl Default for Tls {
    /// [`Tls::system`].
    fn default() -> Self {
        Tls::system()
    }
}

// The configuration is large and says nothing useful in a log line; its roots are in the flags.
impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").finish_non_exhaustive()
    }
}

fn add_ca_files(roots: &mut RootCertStore, paths: &[PathBuf]) -> Result<(), CaFileError> {
    for path in paths {
        for cert in read_ca_file(path)? {
            roots.add(cert).map_err(|source| CaFileError::Invalid {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

/// The CA certificates of a PEM file: other blocks (keys, CRLs) are skipped, no certificate at all
/// is an error (an empty or mistaken file would otherwise add no trust without a word).
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, CaFileError> {
    let bytes = std::fs::read(path).map_err(|source| CaFileError::Read {
        path: path.to_owned(),
        source,
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| CaFileError::Pem {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CaFileError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

/// The system's roots, read on first use. Certificates the system has but rustls cannot parse are
/// skipped: one odd root must not cost the others.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!(error = %error, "a system root certificate store could not be read");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            tracing::warn!(
                ignored,
                "no system root certificates found: webhooks over https:// are trusted only \
                 through --webhook-ca-file"
            );
        } else {
            tracing::debug!(
                added,
                ignored,
                "system root certificates loaded for webhooks"
            );
        }
        roots
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &[u8]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-webhook-ca-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    fn test_ca() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/webhook-test-ca.pem")
    }

    #[test]
    fn reads_the_test_ca() {
        let certs = read_ca_file(&test_ca()).unwrap();
        assert_eq!(certs.len(), 1);
        Tls::with_ca_files(&[test_ca()]).unwrap();
    }

    #[test]
    fn a_missing_file_is_named() {
        let path = PathBuf::from("/nonexistent/switchboard/ca.pem");
        let err = Tls::with_ca_files(&[path]).unwrap_err();
        assert!(matches!(err, CaFileError::Read { .. }), "{err:?}");
        assert!(
            err.to_string().contains("/nonexistent/switchboard/ca.pem"),
            "{err}"
        );
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        for content in [
            &b""[..],
            b"not pem at all\n",
            b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        ] {
            let path = temp_file("empty.pem", content);
            let err = Tls::with_ca_files(std::slice::from_ref(&path)).unwrap_err();
            assert!(matches!(err, CaFileError::NoCertificate { .. }), "{err:?}");
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
        }
    }

    #[test]
    fn a_broken_pem_block_is_refused() {
        let path = temp_file(
            "broken.pem",
            b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n",
        );
        let err = Tls::with_ca_files(&[path]).unwrap_err();
        assert!(matches!(err, CaFileError::Pem { .. }), "{err:?}");
    }

    #[test]
    fn a_certificate_that_is_no_x509_is_refused() {
        // Valid PEM and base64, but the DER inside is not a certificate.
        let path = temp_file(
            "garbage.pem",
            b"-----BEGIN CERTIFICATE-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE-----\n",
        );
        let err = Tls::with_ca_files(std::slice::from_ref(&path)).unwrap_err();
        assert!(matches!(err, CaFileError::Invalid { .. }), "{err:?}");
        let err = Tls::check_ca_files(&[path]).unwrap_err();
        assert!(matches!(err, CaFileError::Invalid { .. }), "{err:?}");
    }
}
