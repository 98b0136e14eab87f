//! TLS to PostgreSQL when the URL asks for it, as libpq reads `sslmode`:
//! `require` encrypts without checking the certificate, `verify-ca` checks it
//! against the CA, `verify-full` also checks the host name. The CA is
//! `sslrootcert` (a PEM file) or, without one, the Mozilla roots. `disable`,
//! `prefer` and no `sslmode` connect as before. rustls (ring provider) through
//! diesel-async's client-and-connection constructor.

use std::path::PathBuf;
use std::sync::Arc;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

/// What the URL's `sslmode` asks for, when it asks for TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Encrypt; accept any certificate.
    Require,
    /// Encrypt; the certificate must chain to the CA.
    VerifyCa,
    /// Encrypt; the certificate must chain to the CA and name the host.
    VerifyFull,
}

/// A URL that asks for TLS, split into what tokio-postgres understands and what
/// we verify ourselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsRequest {
    /// The URL for tokio-postgres (`sslmode=require`, no `sslrootcert`).
    pub url: String,
    /// The mode asked for.
    pub mode: TlsMode,
    /// The CA file, when given.
    pub root_cert: Option<PathBuf>,
}

/// Reads `sslmode`/`sslrootcert` from `url`; `None` when no TLS is asked for.
pub fn tls_request(url: &str) -> ConnectionResult<Option<TlsRequest>> {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Ok(None); // not a URL (a key=value string): leave it to libpq rules
    };
    let (mut mode, mut root_cert) = (None, None);
    let mut kept: Vec<(String, String)> = Vec::new();
    for (key, value) in parsed.query_pairs() {
        match key.as_ref() {
            "sslmode" => mode = Some(value.into_owned()),
            "sslrootcert" => root_cert = Some(PathBuf::from(value.as_ref())),
            _ => kept.push((key.into_owned(), value.into_owned())),
        }
    }
    let mode = match mode.as_deref() {
        None | Some("disable") | Some("allow") | Some("prefer") => return Ok(None),
        Some("require") => TlsMode::Require,
        Some("verify-ca") => TlsMode::VerifyCa,
        Some("verify-full") => TlsMode::VerifyFull,
        Some(other) => {
            return Err(ConnectionError::InvalidConnectionUrl(format!(
                "unknown sslmode {other:?}"
            )))
        }
    };
    kept.push(("sslmode".into(), "require".into()));
    parsed.query_pairs_mut().clear().extend_pairs(kept);
    Ok(Some(TlsRequest {
        url: parsed.to_string(),
        mode,
        root_cert,
    }))
}

/// Connects over TLS as `request` asks.
///
/// `in_unit`: set up for a transaction-mode pooler (`DB_PREPARED_STATEMENTS=false`; see [`crate::db::pool`]).
pub async fn connect(request: &TlsRequest, in_unit: bool) -> ConnectionResult<AsyncPgConnection> {
    let config = client_config(request).map_err(ConnectionError::BadConnection)?;
    let tls = tokio_postgres_rustls::MakeRustlsConnect::new(config);
    let (client, connection) = tokio_postgres::connect(&request.url, tls)
        .await
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    if in_unit {
        return crate::db::pool::adopt_in_unit(client, connection).await;
    }
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(request: &TlsRequest) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = match request.mode {
        TlsMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                chain: None,
                provider: provider(),
            }))
            .with_no_client_auth(),
        TlsMode::VerifyFull => builder
            .with_root_certificates(roots(request)?)
            .with_no_client_auth(),
        TlsMode::VerifyCa => {
            let inner =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots(request)?), provider())
                    .build()
                    .map_err(|e| e.to_string())?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(LibpqVerifier {
                    chain: Some(inner),
                    provider: provider(),
                }))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

fn roots(request: &TlsRequest) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match &request.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("cannot read sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                let cert =
                    cert.map_err(|e| format!("bad certificate in {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| e.to_string())?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// libpq's two modes that rustls has no verifier for: `sslmode=require` (no `chain`:
/// encryption without authentication) and `sslmode=verify-ca` (the chain must verify,
/// the host name is not checked). Handshake signatures are always verified.
#[derive(Debug)]
struct LibpqVerifier {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_are_taken_out_for_tokio_postgres() {
        let r = tls_request(
            "postgresql://u@db:5432/app?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap()
        .unwrap();
        assert_eq!(r.mode, TlsMode::VerifyFull);
        assert_eq!(r.root_cert, Some(PathBuf::from("/ca.pem")));
        assert_eq!(
            r.url,
            "postgresql://u@db:5432/app?application_name=x&sslmode=require"
        );
    }

    #[test]
    fn no_tls_is_asked_without_sslmode_or_with_disable_or_prefer() {
        for url in [
            "postgresql://u@db/app",
            "postgresql://u@db/app?sslmode=disable",
            "postgresql://u@db/app?sslmode=prefer",
        ] {
            assert_eq!(tls_request(url).unwrap(), None, "{url}");
        }
        assert!(tls_request("postgresql://u@db/app?sslmode=sometimes").is_err());
    }
}
