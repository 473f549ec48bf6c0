//! An mTLS HTTP client for the API, as a calling service would hold one: rustls with a client
//! certificate, keep-alive connections, HTTP/2 or HTTP/1.1. Shared by the tests and the load benchmark.
#![allow(dead_code)]

use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Http1,
    Http2,
}

/// A client TLS configuration that trusts `ca_pem` and presents `cert_pem` (if any).
pub fn client_config(ca_pem: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(ca.expect("a CA certificate in PEM"))
            .expect("a usable CA certificate");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("TLS versions the ring provider supports")
        .with_root_certificates(roots);
    match identity {
        Some((cert_pem, key_pem)) => {
            let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .expect("a client certificate in PEM");
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a client key in PEM");
            builder
                .with_client_auth_cert(chain, key)
                .expect("a usable client certificate")
        }
        None => builder.with_no_client_auth(),
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: serde_json::Value,
    pub text: String,
}

impl Answer {
    /// The problem `code` of an error answer.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct ApiClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    base: String,
    bearer: Option<String>,
}

impl ApiClient {
    /// A client for `https://localhost:<port>`.
    pub fn new(port: u16, config: rustls::ClientConfig, protocol: Protocol) -> ApiClient {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        // Without TCP_NODELAY, a small request waits for the server's delayed ACK (~40 ms).
        http.set_nodelay(true);
        // The connector offers by ALPN exactly the protocol asked for.
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(config)
            .https_only();
        let connector = match protocol {
            Protocol::Http1 => builder.enable_http1().wrap_connector(http),
            Protocol::Http2 => builder.enable_http2().wrap_connector(http),
        };
        let mut builder = Client::builder(TokioExecutor::new());
        builder.http2_only(protocol == Protocol::Http2);
        ApiClient {
            client: builder.build(connector),
            base: format!("https://localhost:{port}"),
            bearer: None,
        }
    }

    /// This client, sending `Authorization: Bearer <token>` with every request.
    pub fn with_bearer(&self, token: &str) -> ApiClient {
        ApiClient {
            bearer: Some(token.to_string()),
            ..self.clone()
        }
    }

    pub async fn send(&self, method: Method, path: &str, content_type: &str, body: Vec<u8>) -> Result<Answer, String> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", content_type);
        if let Some(token) = &self.bearer {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .expect("a well-formed request");
        let response = self.client.request(request).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.map_err(|e| format!("{e:?}"))?.to_bytes();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body: serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
            text,
        })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, "application/json", Vec::new())
            .await
            .expect("the request is answered")
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.send(Method::POST, path, "application/json", body.to_string().into_bytes())
            .await
            .expect("the request is answered")
    }
}
