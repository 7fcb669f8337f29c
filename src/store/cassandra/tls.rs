//! TLS to the cluster: the `--cassandra-tls*` knobs turned into the rustls
//! client configuration the driver encrypts every connection with.
//!
//! Why it is shaped this way:
//! * **Certificates are verified, host names included, though the driver
//!   knows no host names.** The driver resolves contact points and discovers
//!   the other nodes as IP addresses, and gives rustls the node's IP address as
//!   the server name (scylla 1.9, `ServerName::IpAddress`), so a certificate
//!   issued for `cassandra-1.example.com` would never verify. [`NodeVerifier`]
//!   checks the chain as rustls does, but the name against what the operator
//!   configured: `--cassandra-tls-server-name` when set, and only that;
//!   otherwise the host of any contact point (`--cassandra-nodes`) or the
//!   address the driver connected to. With IP contact points and certificates
//!   issued for names, set the override.
//! * **Trust is explicit.** The CA comes from `--cassandra-tls-ca` (PEM); without
//!   it, from the platform's trust store (`rustls-native-certs`, which honours
//!   `SSL_CERT_FILE` / `SSL_CERT_DIR`), for clusters with publicly issued
//!   certificates. There is no switch to turn verification off.
//! * **Files are read once, at start.** A missing or malformed file, or a client
//!   key that does not match its certificate, is a [`ConfigError`] naming the
//!   knob before any connection is tried.
//!
//! The driver sends no SNI (rustls sends none for an IP address), so a node that
//! picks its certificate by SNI serves its default one.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::settings::CassandraSettings;
use crate::config::{Config, ConfigError};
use crate::store::StoreError;

const TLS_KNOB: &str = "--cassandra-tls / RESUME_CASSANDRA_TLS";
const CA_KNOB: &str = "--cassandra-tls-ca / RESUME_CASSANDRA_TLS_CA";
const CERT_KNOB: &str = "--cassandra-tls-cert / RESUME_CASSANDRA_TLS_CERT";
const KEY_KNOB: &str = "--cassandra-tls-key / RESUME_CASSANDRA_TLS_KEY";
const SERVER_NAME_KNOB: &str = "--cassandra-tls-server-name / RESUME_CASSANDRA_TLS_SERVER_NAME";
const NODES_KNOB: &str = "--cassandra-nodes / RESUME_CASSANDRA_NODES";

/// TLS to the cluster, ready to hand to the driver.
#[derive(Clone)]
pub struct CassandraTls {
    /// The rustls configuration of every connection (trust, client certificate, verifier).
    client_config: Arc<ClientConfig>,
    /// Where the trust anchors came from, for logs and errors.
    trust: String,
    /// Whether a client certificate is offered to nodes that ask for one.
    client_certificate: bool,
    /// The names a node's certificate is checked against, for logs and errors.
    names: String,
}

impl fmt::Debug for CassandraTls {
    // The rustls configuration holds the client key; show what it was built from.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraTls")
            .field("trust", &self.trust)
            .field("client_certificate", &self.client_certificate)
            .field("names", &self.names)
            .finish()
    }
}

impl CassandraTls {
    /// Reads the TLS knobs of `config` and the files they name; `None` when
    /// `--cassandra-tls` is off (any other TLS knob set is then an error, so a
    /// forgotten switch cannot silently mean plain text). `nodes` are the
    /// contact points, already trimmed.
    pub fn from_config(config: &Config, nodes: &[String]) -> Result<Option<Self>, ConfigError> {
        if !config.cassandra_tls {
            let stray = [
                (config.cassandra_tls_ca.is_some(), CA_KNOB),
                (config.cassandra_tls_cert.is_some(), CERT_KNOB),
                (config.cassandra_tls_key.is_some(), KEY_KNOB),
                (config.cassandra_tls_server_name.is_some(), SERVER_NAME_KNOB),
            ];
            return match stray.iter().find(|(set, _)| *set) {
                Some((_, knob)) => Err(ConfigError::new(
                    knob,
                    format!("is set but TLS is off; enable it with {TLS_KNOB}"),
                )),
                None => Ok(None),
            };
        }
        let names = expected_names(config.cassandra_tls_server_name.as_deref(), nodes)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let (roots, trust) = match &config.cassandra_tls_ca {
            Some(path) => (ca_file_roots(path)?, format!("CA {}", path.display())),
            None => (platform_roots()?, "the platform trust store".to_owned()),
        };
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| ConfigError::new(CA_KNOB, e.to_string()))?;
        let names_text = names.describe();
        let verifier = Arc::new(NodeVerifier { inner, names });
        // "dangerous" because rustls cannot know what a custom verifier checks;
        // this one checks what the default does, with the configured names.
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ConfigError::new(TLS_KNOB, e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let client_config = match (&config.cassandra_tls_cert, &config.cassandra_tls_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(certificate_chain(cert)?, private_key(key)?)
                .map_err(|e| {
                    ConfigError::new(KEY_KNOB, format!("does not fit {}: {e}", cert.display()))
                })?,
            (None, None) => builder.with_no_client_auth(),
            (Some(_), None) => {
                return Err(ConfigError::new(
                    KEY_KNOB,
                    "not set, but a client certificate is",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(CERT_KNOB, "not set, but a client key is"));
            }
        };
        Ok(Some(Self {
            client_config: Arc::new(client_config),
            trust,
            client_certificate: config.cassandra_tls_cert.is_some(),
            names: names_text,
        }))
    }

    /// The configuration to give the driver (`SessionBuilder::tls_context`).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client_config)
    }
}

/// The error of a session that could not be opened; over TLS it says what the
/// nodes' certificates were checked against, since most TLS failures at this
/// point are a certificate the settings do not accept.
pub(crate) fn connect_error(settings: &CassandraSettings, error: &str) -> StoreError {
    let nodes = settings.nodes.join(",");
    match &settings.tls {
        None => StoreError::Unavailable(format!("cannot connect to Cassandra at {nodes}: {error}")),
        Some(tls) => StoreError::Unavailable(format!(
            "cannot connect to Cassandra at {nodes} over TLS (certificates checked against {} \
             for {}): {error}",
            tls.trust, tls.names
        )),
    }
}

/// What a node's certificate must be valid for.
#[derive(Debug, Clone)]
struct ExpectedNames {
    /// Names any of which the certificate may carry.
    names: Vec<ServerName<'static>>,
    /// Whether the address the driver connected to is accepted as well (not
    /// when the operator named the one server name to expect).
    node_address: bool,
}

impl ExpectedNames {
    fn describe(&self) -> String {
        let names: Vec<String> = self
            .names
            .iter()
            .map(|name| name.to_str().into_owned())
            .collect();
        let names = names.join(", ");
        if self.node_address {
            format!("{names} or the address connected to")
        } else {
            names
        }
    }
}

/// The override alone when set; otherwise every contact point's host.
fn expected_names(
    server_name: Option<&str>,
    nodes: &[String],
) -> Result<ExpectedNames, ConfigError> {
    if let Some(name) = server_name {
        let name = ServerName::try_from(name.trim().to_owned()).map_err(|_| {
            ConfigError::new(
                SERVER_NAME_KNOB,
                format!("{name:?} is not a DNS name or an IP address"),
            )
        })?;
        return Ok(ExpectedNames {
            names: vec![name],
            node_address: false,
        });
    }
    let mut names = Vec::with_capacity(nodes.len());
    for node in nodes {
        let host = contact_point_host(node);
        let name = ServerName::try_from(host.to_owned()).map_err(|_| {
            ConfigError::new(
                NODES_KNOB,
                format!(
                    "{host:?} cannot be checked against a certificate; name the certificate's \
                     host with {SERVER_NAME_KNOB}"
                ),
            )
        })?;
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(ExpectedNames {
        names,
        node_address: true,
    })
}

/// The host of a contact point: `host:port`, `[v6]:port`, a bare host or address.
fn contact_point_host(node: &str) -> &str {
    if node.parse::<IpAddr>().is_ok() {
        return node;
    }
    if node.parse::<SocketAddr>().is_ok() {
        // `1.2.3.4:9042` or `[::1]:9042`.
        let (host, _) = node.rsplit_once(':').unwrap_or((node, ""));
        return host.trim_start_matches('[').trim_end_matches(']');
    }
    match node.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => node,
    }
}

/// Verifies a node's certificate chain as rustls does, and its name against
/// the [`ExpectedNames`] instead of the IP address the driver passes.
#[derive(Debug)]
struct NodeVerifier {
    /// rustls's own verifier: chain, validity, usage and name checks.
    inner: Arc<WebPkiServerVerifier>,
    /// What the certificate must be valid for.
    names: ExpectedNames,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let node_address = self.names.node_address.then_some(server_name);
        let mut first_mismatch = None;
        for name in self.names.names.iter().chain(node_address) {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, name, ocsp_response, now)
            {
                Ok(verified) => return Ok(verified),
                // A name mismatch: another expected name may still fit.
                Err(rustls::Error::InvalidCertificate(
                    error @ (CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. }),
                )) => {
                    first_mismatch.get_or_insert(error);
                }
                // Anything else (unknown issuer, expired, bad encoding) fails
                // whatever the name.
                Err(other) => return Err(other),
            }
        }
        Err(rustls::Error::InvalidCertificate(
            first_mismatch.unwrap_or(CertificateError::NotValidForName),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// The trust anchors of a PEM CA bundle; a file without one is an error.
fn ca_file_roots(path: &Path) -> Result<RootCertStore, ConfigError> {
    let mut roots = RootCertStore::empty();
    for certificate in pem_certificates(CA_KNOB, path)? {
        roots.add(certificate).map_err(|e| {
            ConfigError::new(
                CA_KNOB,
                format!("{}: not a CA certificate: {e}", path.display()),
            )
        })?;
    }
    Ok(roots)
}

/// The platform's trust anchors; none at all is an error (no CA could ever verify).
fn platform_roots() -> Result<RootCertStore, ConfigError> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "skipping part of the platform trust store");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    if ignored > 0 {
        tracing::warn!(
            ignored,
            "skipping unparsable certificates of the platform trust store"
        );
    }
    if added == 0 {
        return Err(ConfigError::new(
            CA_KNOB,
            "not set, and the platform trust store has no certificate: name the cluster's CA (PEM)",
        ));
    }
    Ok(roots)
}

/// Every certificate of a PEM file, in order; none is an error.
fn pem_certificates(
    knob: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(knob, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError::new(knob, format!("{}: {e}", path.display())))?;
    if certificates.is_empty() {
        return Err(ConfigError::new(
            knob,
            format!(
                "{}: no PEM certificate (BEGIN CERTIFICATE) in it",
                path.display()
            ),
        ));
    }
    Ok(certificates)
}

fn certificate_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    pem_certificates(CERT_KNOB, path)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ConfigError> {
    let pem = read(KEY_KNOB, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        ConfigError::new(
            KEY_KNOB,
            format!("{}: no PEM private key in it ({e})", path.display()),
        )
    })
}

fn read(knob: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path)
        .map_err(|e| ConfigError::new(knob, format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contact_point_hosts_lose_their_port() {
        for (node, host) in [
            ("127.0.0.1:9042", "127.0.0.1"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]:9042", "::1"),
            ("::1", "::1"),
            ("cassandra-0.db.svc:9042", "cassandra-0.db.svc"),
            ("cassandra-0.db.svc", "cassandra-0.db.svc"),
        ] {
            assert_eq!(contact_point_host(node), host, "{node}");
        }
    }

    #[test]
    fn expected_names_are_the_override_alone_or_every_contact_point() {
        let nodes = ["10.0.0.1:9042".to_owned(), "db.example.com:9042".to_owned()];
        let names = expected_names(None, &nodes).unwrap();
        assert_eq!(
            names.describe(),
            "10.0.0.1, db.example.com or the address connected to"
        );
        let names = expected_names(Some("cassandra.internal"), &nodes).unwrap();
        assert_eq!(names.describe(), "cassandra.internal");

        let err = expected_names(Some("not a name"), &nodes).unwrap_err();
        assert!(
            err.to_string().contains("--cassandra-tls-server-name"),
            "{err}"
        );
        let err = expected_names(None, &["bad host!:9042".to_owned()]).unwrap_err();
        assert!(err.to_string().contains("--cassandra-nodes"), "{err}");
        assert!(
            err.to_string().contains("--cassandra-tls-server-name"),
            "{err}"
        );
    }
}
