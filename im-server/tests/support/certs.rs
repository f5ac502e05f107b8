//! Test certificates made with rcgen: a CA, and server certificates it
//! signs for `localhost` and 127.0.0.1, written as PEM files; the files of
//! a test server's TLS listener.

use im_client_sdk::TlsConfig;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// The CA's certificate (what a client trusts).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses) and its
    /// key, as PEM.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "im test server");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Issues a certificate for `localhost` and 127.0.0.1 and writes it and
    /// its key to `dir/cert.pem` and `dir/key.pem` (the key first, so a
    /// reloading server never pairs the new certificate with the old key
    /// for long); returns the two paths.
    pub fn write_server_pair(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = self.issue(&["localhost", "127.0.0.1"]);
        let (cert_file, key_file) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&key_file, key).unwrap();
        std::fs::write(&cert_file, cert).unwrap();
        (cert_file, key_file)
    }
}

/// The certificate files of a test server's TLS listener, signed by a test
/// CA; removed at the end.
pub struct TestTls {
    pub ca: TestCa,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestTls {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("im test CA");
        let (cert_file, key_file) = ca.write_server_pair(dir.path());
        Self {
            ca,
            cert_file,
            key_file,
            _dir: dir,
        }
    }

    /// A `[tls]` section serving these files on 127.0.0.1:0.
    pub fn section(&self) -> im_server::config::TlsSection {
        im_server::config::TlsSection {
            cert_file: self.cert_file.display().to_string(),
            key_file: self.key_file.display().to_string(),
            listen: "127.0.0.1:0".into(),
            reload_interval_ms: 200,
            ..Default::default()
        }
    }

    /// What a client trusts: this test CA only.
    pub fn client_tls(&self) -> TlsConfig {
        TlsConfig::new()
            .only_custom_roots(true)
            .add_root_pem(self.ca.pem())
    }
}
