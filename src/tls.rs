//! Mutual TLS for the API listener: the server configuration (rustls with the ring provider), reload
//! on SIGHUP, and the acceptor that reads the client certificate once per connection.
//!
//! Every connection must present a client certificate that chains to the configured CA bundle, is
//! within its validity period, and allows client authentication; rustls refuses anything else during
//! the handshake, before a byte of HTTP is read. Names in the certificate are read here and resolved
//! to a principal per request (see `identity`).

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::Extension;
use axum::middleware::AddExtension;
use axum_server::accept::{Accept, NoDelayAcceptor};
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tower::Layer;

use crate::identity::PeerCertificate;

/// The oldest TLS version the API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsVersionMin {
    #[value(name = "1.3")]
    Tls13,
    #[value(name = "1.2")]
    Tls12,
}

/// Where the API's certificate, key and client CA bundle are.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: PathBuf,
    pub version_min: TlsVersionMin,
}

/// Reads the files and builds the server configuration; any unreadable or invalid file is an error
/// naming it.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("reading the private key {}", files.key.display()))?;
    let mut roots = RootCertStore::empty();
    for ca in read_certificates(&files.client_ca)? {
        roots
            .add(ca)
            .with_context(|| format!("adding a CA certificate from {}", files.client_ca.display()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .context("building the client certificate verifier")?;
    let versions: &[&rustls::SupportedProtocolVersion] = match files.version_min {
        TlsVersionMin::Tls13 => &[&rustls::version::TLS13],
        TlsVersionMin::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .with_context(|| format!("using the certificate {} with its key", files.cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    anyhow::ensure!(!certificates.is_empty(), "{} holds no certificate", path.display());
    Ok(certificates)
}

/// Reloads the certificate, key and CA bundle on every SIGHUP. Open connections keep the
/// configuration they were accepted with; new ones get the new one. A reload that fails keeps the
/// old configuration and says why.
pub fn reload_on_sighup(config: RustlsConfig, files: TlsFiles) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("installing a SIGHUP handler")?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            match server_config(&files) {
                Ok(new) => {
                    config.reload_from_config(new);
                    tracing::info!(cert = %files.cert.display(), "TLS certificates reloaded");
                }
                Err(error) => tracing::error!(
                    error = format!("{error:#}"),
                    "TLS reload failed; keeping the old certificates"
                ),
            }
        }
    }))
}

/// Completes the TLS handshake, then attaches the verified client certificate's names to every
/// request of the connection.
#[derive(Clone)]
pub struct ClientCertificateAcceptor {
    inner: RustlsAcceptor<NoDelayAcceptor>,
}

impl ClientCertificateAcceptor {
    pub fn new(config: RustlsConfig) -> ClientCertificateAcceptor {
        // Without TCP_NODELAY, a small response waits for the client's delayed ACK (~40 ms).
        ClientCertificateAcceptor {
            inner: RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new()),
        }
    }
}

type AcceptFuture<S> =
    Pin<Box<dyn Future<Output = io::Result<(TlsStream<TcpStream>, AddExtension<S, PeerCertificate>)>> + Send>>;

impl<S> Accept<TcpStream, S> for ClientCertificateAcceptor
where
    S: Send + 'static,
{
    type Stream = TlsStream<TcpStream>;
    type Service = AddExtension<S, PeerCertificate>;
    type Future = AcceptFuture<S>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let acceptor = self.inner.clone();
        Box::pin(async move {
            let (stream, service) = acceptor.accept(stream, service).await?;
            // The verifier requires a certificate, so a completed handshake always has one.
            let leaf = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .ok_or_else(|| io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate"))?;
            let peer = PeerCertificate::from_der(leaf.as_ref());
            Ok((stream, Extension(peer).layer(service)))
        })
    }
}
