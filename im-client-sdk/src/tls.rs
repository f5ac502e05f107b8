//! Which servers the client trusts over TLS (`wss://`, and every other
//! secure transport of the SDK), and the rustls configuration built from it.
//!
//! By default the client trusts the operating system's root certificates
//! (read once per [`TlsConfig`] with `rustls-native-certs`; where the system
//! has none, as in a minimal container, the Mozilla roots bundled with
//! `webpki-roots` are used instead). Custom roots, for a private CA or a
//! self-signed test server, are added with [`TlsConfig::add_root_pem`] or
//! [`TlsConfig::add_root_file`], beside the system roots or, with
//! [`TlsConfig::only_custom_roots`], instead of them.
//!
//! The server's certificate chain must lead to a trusted root, be valid now
//! and name the host of the URL (a DNS name, or an IP address in the
//! certificate's subjectAltName); otherwise the connection is refused with
//! [`Error::Tls`] naming the cause.
//!
//! ```no_run
//! # fn demo() -> Result<(), im_client_sdk::Error> {
//! use im_client_sdk::{ClientConfig, TlsConfig};
//! let mut config = ClientConfig::new("wss://chat.example.com/v1/ws");
//! config.tls = TlsConfig::new().add_root_file("/etc/im/private-ca.pem");
//! // Other transports reuse the same trust, with their own ALPN:
//! let rustls = config.tls.rustls_config(&[b"h2"])?;
//! # let _ = rustls; Ok(()) }
//! ```

use crate::{Error, Result};
use parking_lot::Mutex;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;

/// ALPN of HTTP/1.1, spoken by the WebSocket handshake.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of HTTP/2, spoken by gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// Where a custom root certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum RootSource {
    /// PEM text given by the application.
    Pem(Arc<[u8]>),
    /// A PEM file, read when the configuration is first used.
    File(PathBuf),
}

/// What a [`TlsConfig`] built once and hands out again: loading the system
/// roots reads dozens of files, and one shared rustls configuration per ALPN
/// lets reconnects resume their TLS session.
#[derive(Default)]
struct Built {
    roots: Option<Arc<RootCertStore>>,
    configs: Vec<(Vec<Vec<u8>>, Arc<rustls::ClientConfig>)>,
}

/// The certificate authorities the client trusts. Cheap to clone; clones
/// share what was built from it. The default trusts the system roots.
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// Custom roots, in the order added.
    custom: Vec<RootSource>,
    /// Trust only `custom`, not the system roots.
    only_custom: bool,
    /// Built on first use; replaced (not shared) when a setting changes.
    built: Arc<Mutex<Built>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("custom_roots", &self.custom.len())
            .field("only_custom_roots", &self.only_custom)
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// Trusts the system's root certificates.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also trusts the certificates of this PEM text (one or more
    /// `-----BEGIN CERTIFICATE-----` blocks).
    pub fn add_root_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.custom.push(RootSource::Pem(pem.into().into()));
        self.changed()
    }

    /// Also trusts the certificates of this PEM file (read when the
    /// configuration is first used; an unreadable file fails that use).
    pub fn add_root_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.custom.push(RootSource::File(path.into()));
        self.changed()
    }

    /// `true`: trust only the custom roots, not the system's (pinning a
    /// private CA). Default `false`.
    pub fn only_custom_roots(mut self, only: bool) -> Self {
        self.only_custom = only;
        self.changed()
    }

    fn changed(mut self) -> Self {
        self.built = Arc::default();
        self
    }

    /// The trusted roots: the system's (unless only custom ones are
    /// wanted) and the custom ones. Built once, then shared.
    pub fn root_store(&self) -> Result<Arc<RootCertStore>> {
        if let Some(roots) = &self.built.lock().roots {
            return Ok(roots.clone());
        }
        let mut roots = RootCertStore::empty();
        if !self.only_custom {
            add_system_roots(&mut roots);
        }
        for source in &self.custom {
            let certs = match source {
                RootSource::Pem(pem) => CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| Error::Tls(format!("custom root certificate: {e}")))?,
                RootSource::File(path) => CertificateDer::pem_file_iter(path)
                    .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                    .map_err(|e| Error::Tls(format!("custom root certificate {}: {e}", path.display())))?,
            };
            if certs.is_empty() {
                return Err(Error::Tls(format!(
                    "custom root certificate {}: no CERTIFICATE block",
                    describe(source)
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::Tls(format!("custom root certificate {}: {e}", describe(source))))?;
            }
        }
        if roots.is_empty() {
            return Err(Error::Tls("no trusted root certificate".into()));
        }
        let roots = Arc::new(roots);
        self.built.lock().roots = Some(roots.clone());
        Ok(roots)
    }

    /// A rustls client configuration trusting these roots (ring crypto,
    /// TLS 1.2 and 1.3) that offers `alpn` (e.g. `[b"h2"]` for gRPC,
    /// [`ALPN_HTTP1`] for WebSocket and plain HTTP). Built once per ALPN
    /// list, then shared, so reconnects can resume their session.
    pub fn rustls_config(&self, alpn: &[&[u8]]) -> Result<Arc<rustls::ClientConfig>> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        if let Some((_, config)) = self.built.lock().configs.iter().find(|(a, _)| *a == alpn) {
            return Ok(config.clone());
        }
        let roots = self.root_store()?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.clone();
        let config = Arc::new(config);
        self.built.lock().configs.push((alpn, config.clone()));
        Ok(config)
    }

    /// Opens a TLS session over `stream` to `host` (a DNS name or an IP
    /// address, as in the URL), offering `alpn`. A refused certificate is
    /// an [`Error::Tls`] naming the cause; other failures [`Error::Connect`].
    pub async fn connect<S>(
        &self,
        host: &str,
        stream: S,
        alpn: &[&[u8]],
    ) -> Result<tokio_rustls::client::TlsStream<S>>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let config = self.rustls_config(alpn)?;
        let name = server_name(host)?;
        tokio_rustls::TlsConnector::from(config)
            .connect(name, stream)
            .await
            .map_err(|e| handshake_error(host, &e))
    }
}

fn describe(source: &RootSource) -> String {
    match source {
        RootSource::Pem(_) => "(PEM)".into(),
        RootSource::File(path) => path.display().to_string(),
    }
}

/// The system's roots, or the bundled Mozilla roots where it has none.
fn add_system_roots(roots: &mut RootCertStore) {
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::debug!(error = %e, "reading a system root certificate failed");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if added == 0 {
        tracing::debug!("no system root certificates: using the bundled Mozilla roots");
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
}

/// The name the certificate must carry: a DNS name or an IP address (a URL
/// writes IPv6 addresses in brackets).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned())
        .map_err(|e| Error::Tls(format!("{host:?} is not a valid server name: {e}")))
}

/// Turns a failed handshake into a message that says why.
fn handshake_error(host: &str, e: &std::io::Error) -> Error {
    use rustls::CertificateError as C;
    let Some(tls) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return Error::Connect(format!("TLS handshake with {host}: {e}"));
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => {
            let why = match cert {
                C::UnknownIssuer => {
                    "certificate not trusted: UnknownIssuer (not issued by a trusted root)".to_owned()
                }
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    format!("certificate not valid for this host: {cert}")
                }
                C::Expired | C::ExpiredContext { .. } => format!("certificate expired: {cert}"),
                other => format!("certificate not trusted: {other}"),
            };
            Error::Tls(format!("{host}: {why}"))
        }
        rustls::Error::NoApplicationProtocol => Error::Tls(format!(
            "{host}: the server speaks none of the offered protocols (ALPN)"
        )),
        other => Error::Tls(format!("TLS handshake with {host}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_roots_are_parsed_and_bad_pem_is_a_tls_error() {
        let bad = TlsConfig::new()
            .only_custom_roots(true)
            .add_root_pem("not a certificate");
        assert!(matches!(bad.root_store(), Err(Error::Tls(m)) if m.contains("no CERTIFICATE")));
        let missing = TlsConfig::new().add_root_file("/nonexistent/ca.pem");
        assert!(
            matches!(missing.rustls_config(&[]), Err(Error::Tls(m)) if m.contains("/nonexistent/ca.pem"))
        );
        let none = TlsConfig::new().only_custom_roots(true);
        assert!(matches!(none.root_store(), Err(Error::Tls(_))));
    }

    #[test]
    fn configs_are_built_once_per_alpn_and_rebuilt_after_a_change() {
        let tls = TlsConfig::new();
        let a = tls.rustls_config(&[ALPN_HTTP1]).unwrap();
        let b = tls.clone().rustls_config(&[ALPN_HTTP1]).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "clones share what was built");
        let h2 = tls.rustls_config(&[b"h2"]).unwrap();
        assert_eq!(h2.alpn_protocols, vec![b"h2".to_vec()]);
        let changed = tls.only_custom_roots(true);
        assert!(
            changed.rustls_config(&[ALPN_HTTP1]).is_err(),
            "no custom root: nothing trusted"
        );
    }

    #[test]
    fn server_names_accept_dns_names_and_ip_addresses() {
        assert!(matches!(server_name("localhost"), Ok(ServerName::DnsName(_))));
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad host").is_err());
    }
}
