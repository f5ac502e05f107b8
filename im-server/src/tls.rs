//! TLS for the server's listeners: rustls with the ring provider, a
//! certificate chain and private key read from PEM files, and reloaded when
//! those files change on disk, without a restart.
//!
//! [`TlsCertificate`] holds the pair in use; every handshake asks it for the
//! current one, so a reload applies to the next connection while those
//! already open keep their session. [`TlsCertificate::watch`] checks the
//! files' modification time, size and inode every few seconds and loads a
//! changed pair; a pair that does not load (half written, key not matching
//! the certificate) keeps the old one in service and logs a warning, once
//! per change of the files.
//!
//! Each transport makes its own acceptor with its ALPN: the HTTP and
//! WebSocket listener uses [`ALPN_HTTP1`], a gRPC listener would use
//! [`ALPN_H2`]:
//!
//! ```no_run
//! # async fn demo(stream: tokio::net::TcpStream) -> Result<(), Box<dyn std::error::Error>> {
//! use im_server::tls::{ALPN_H2, TlsCertificate, handshake};
//! let certificate = TlsCertificate::load("/etc/im/cert.pem", "/etc/im/key.pem")?;
//! let acceptor = certificate.acceptor(&[ALPN_H2]);
//! let tls_stream = handshake(&acceptor, stream, std::time::Duration::from_secs(10)).await?;
//! # let _ = tls_stream; Ok(()) }
//! ```

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

/// ALPN of HTTP/1.1: the HTTP and WebSocket listener.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
/// ALPN of HTTP/2: gRPC.
pub const ALPN_H2: &[u8] = b"h2";

/// Why a certificate and key cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file cannot be read or parsed.
    #[error("{path}: {source}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rustls_pki_types::pem::Error,
    },
    /// The certificate file holds no `CERTIFICATE` block.
    #[error("{0}: no CERTIFICATE in the file")]
    NoCertificate(PathBuf),
    /// The key does not fit the certificate, or is of a kind rustls cannot use.
    #[error("{key_file}: {source}")]
    Key {
        /// The key file.
        key_file: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
}

/// Identifies one version of a file: a change of any part means a rewrite
/// (in place, by rename, or by a symlink pointing elsewhere, as certbot does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

/// What [`TlsCertificate`] shares with its resolver and watcher.
#[derive(Debug)]
struct State {
    cert_file: PathBuf,
    key_file: PathBuf,
    /// The crypto provider: ring, whatever else the process links.
    provider: Arc<CryptoProvider>,
    /// The pair every new handshake gets.
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' stamps when last loaded or tried: a change is tried once.
    seen: Mutex<(Option<FileStamp>, Option<FileStamp>)>,
}

/// A certificate chain and key from PEM files, reloaded when they change.
/// Cheap to clone; clones share the pair in use.
#[derive(Debug, Clone)]
pub struct TlsCertificate {
    state: Arc<State>,
}

/// Hands every handshake the current pair.
#[derive(Debug)]
struct Resolver(Arc<State>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().clone())
    }
}

/// Reads and checks a pair: every certificate of the chain file (the
/// server's first), and the first private key (PKCS#8, PKCS#1 or SEC1) of
/// the key file, which must match the first certificate.
fn load_pair(cert_file: &Path, key_file: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    fn pem(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> TlsError + '_ {
        move |source| TlsError::Pem {
            path: path.to_owned(),
            source,
        }
    }
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(pem(cert_file))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert_file.to_owned()));
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(pem(key_file))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        key_file: key_file.to_owned(),
        source,
    })
}

impl TlsCertificate {
    /// Loads the pair; fails if it cannot be used.
    pub fn load(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Result<Self, TlsError> {
        let (cert_file, key_file) = (cert_file.into(), key_file.into());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let seen = (stamp(&cert_file), stamp(&key_file));
        let pair = load_pair(&cert_file, &key_file, &provider)?;
        Ok(Self {
            state: Arc::new(State {
                cert_file,
                key_file,
                provider,
                current: RwLock::new(Arc::new(pair)),
                seen: Mutex::new(seen),
            }),
        })
    }

    /// The pair in use.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.state.current.read().clone()
    }

    /// Loads the pair again if either file changed since it was last loaded
    /// or tried. `Ok(true)`: a new pair is in use; `Ok(false)`: nothing
    /// changed; `Err`: the changed files do not load, the old pair stays
    /// (and is not tried again until the files change again).
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let state = &self.state;
        // Stamped before reading: a write during the read changes the stamp
        // again, and the next check reads once more.
        let now = (stamp(&state.cert_file), stamp(&state.key_file));
        {
            let mut seen = state.seen.lock();
            if *seen == now {
                return Ok(false);
            }
            *seen = now;
        }
        let pair = load_pair(&state.cert_file, &state.key_file, &state.provider)?;
        *state.current.write() = Arc::new(pair);
        Ok(true)
    }

    /// Checks the files every `interval` until `stop` is cancelled, and
    /// puts a changed pair in use (see [`TlsCertificate::reload_if_changed`]).
    pub async fn watch(self, interval: Duration, stop: CancellationToken) {
        let mut every = tokio::time::interval(interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            // File reads are short, but never on a worker thread.
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload_if_changed()).await {
                Ok(Ok(true)) => tracing::info!(
                    cert_file = %self.state.cert_file.display(),
                    "TLS certificate reloaded"
                ),
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(
                    error = %e,
                    "TLS certificate files changed but do not load; the previous certificate stays in use"
                ),
                Err(e) => tracing::warn!(error = %e, "TLS certificate check failed"),
            }
        }
    }

    /// A rustls server configuration serving the current pair (TLS 1.2 and
    /// 1.3, ring, stateless session tickets) that accepts `alpn`.
    pub fn server_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.state.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.state.clone())));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        match rustls::crypto::ring::Ticketer::new() {
            Ok(ticketer) => config.ticketer = ticketer,
            Err(e) => tracing::warn!(error = %e, "no TLS session tickets"),
        }
        Arc::new(config)
    }

    /// An acceptor for a listener whose clients speak `alpn`
    /// ([`ALPN_HTTP1`] for HTTP and WebSocket, [`ALPN_H2`] for gRPC).
    pub fn acceptor(&self, alpn: &[&[u8]]) -> TlsAcceptor {
        TlsAcceptor::from(self.server_config(alpn))
    }
}

/// Runs the server side of a TLS handshake, failing after `timeout`: a
/// client that sends nothing or garbage costs its own task, never the
/// accept loop's time.
pub async fn handshake<IO>(
    acceptor: &TlsAcceptor,
    stream: IO,
    timeout: Duration,
) -> std::io::Result<TlsStream<IO>>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(result) => result,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "TLS handshake timed out",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let cert = rcgen::generate_simple_self_signed(vec![name.to_owned()]).unwrap();
        let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&c, cert.cert.pem()).unwrap();
        std::fs::write(&k, cert.signing_key.serialize_pem()).unwrap();
        (c, k)
    }

    fn names(cert: &TlsCertificate) -> Vec<u8> {
        cert.current().cert[0].to_vec()
    }

    #[test]
    fn a_changed_pair_is_loaded_and_a_broken_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "one.test");
        let cert = TlsCertificate::load(&c, &k).unwrap();
        let first = names(&cert);
        assert!(!cert.reload_if_changed().unwrap(), "nothing changed");

        // A new certificate with the old key: refused, the old pair stays.
        let other = rcgen::generate_simple_self_signed(vec!["two.test".into()]).unwrap();
        std::fs::write(&c, other.cert.pem()).unwrap();
        assert!(matches!(cert.reload_if_changed(), Err(TlsError::Key { .. })));
        assert_eq!(names(&cert), first);
        assert!(
            !cert.reload_if_changed().unwrap(),
            "a failed change is tried once"
        );

        // Then its key: the new pair is in use.
        std::fs::write(&k, other.signing_key.serialize_pem()).unwrap();
        assert!(cert.reload_if_changed().unwrap());
        assert_eq!(names(&cert), other.cert.der().to_vec());
    }

    #[test]
    fn unusable_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "x.test");
        let missing = dir.path().join("missing.pem");
        assert!(matches!(
            TlsCertificate::load(&missing, &k),
            Err(TlsError::Pem { .. })
        ));
        std::fs::write(dir.path().join("empty.pem"), "nothing here\n").unwrap();
        assert!(matches!(
            TlsCertificate::load(dir.path().join("empty.pem"), &k),
            Err(TlsError::NoCertificate(_))
        ));
        assert!(matches!(TlsCertificate::load(&c, &c), Err(TlsError::Pem { .. })));
    }
}
