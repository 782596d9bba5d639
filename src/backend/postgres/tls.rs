//! TLS to the server: rustls with the ring provider, chosen explicitly (ureq, behind the
//! `http` feature, brings ring too, and rustls panics at `ClientConfig::builder()` when more
//! than one provider is compiled in and none is chosen). The server's certificate and name
//! are always verified: against the Mozilla roots, or only against the CA certificates of a
//! file the caller names.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::backend::{BackendError, BackendErrorKind};

/// The connector for `roots`: the CA certificates in a PEM file, or the Mozilla roots.
///
/// # Errors
/// [`BackendErrorKind::Io`] if the file cannot be read; [`BackendErrorKind::Other`] if it
/// holds no certificate or one rustls refuses.
pub(super) fn connector(ca_file: Option<&Path>) -> Result<MakeRustlsConnect, BackendError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| pem_error(path, e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, e))?;
            if certs.is_empty() {
                return Err(
                    BackendError::new(BackendErrorKind::Other, "holds no PEM certificate")
                        .with_path(path),
                );
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    BackendError::new(
                        BackendErrorKind::Other,
                        "holds a certificate rustls refuses",
                    )
                    .with_path(path)
                    .with_source(e)
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| {
            BackendError::new(BackendErrorKind::Other, "cannot set TLS up").with_source(e)
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn pem_error(path: &Path, e: rustls::pki_types::pem::Error) -> BackendError {
    let kind = match e {
        rustls::pki_types::pem::Error::Io(_) => BackendErrorKind::Io,
        _ => BackendErrorKind::Other,
    };
    BackendError::new(kind, "cannot read the CA certificates")
        .with_path(path)
        .with_source(e)
}
