//! The real service on random ports, over a fresh database and a PKI made for the test, with clients
//! holding certificates of the demo principals.

use std::path::{Path, PathBuf};

use clap::Parser;
use finledger::configuration::Settings;
use finledger::identity::PrincipalKind;
use finledger::pki::{CertificateAuthority, DEV_TRUST_DOMAIN, Issued, Profile};
use finledger::startup::{Application, Database};

use super::client::{ApiClient, Protocol, client_config};
use super::tokens::{AUDIENCE, ISSUER, TokenIssuer};
use super::{ManualClock, fresh_database, shared_cluster};

#[derive(Parser)]
struct Arguments {
    #[command(flatten)]
    settings: Settings,
}

/// The service under test.
pub struct TestApp {
    pub application: Option<Application>,
    pub ca: CertificateAuthority,
    pub dir: tempfile::TempDir,
    pub clock: ManualClock,
    pub port: u16,
    pub tokens: TokenIssuer,
    arguments: Vec<String>,
    database: sqlx::postgres::PgConnectOptions,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(&[]).await
    }

    /// Starts the service; `extra` are further command-line settings.
    pub async fn spawn_with(extra: &[&str]) -> TestApp {
        let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies");
        TestApp::spawn_in(&policies, extra).await
    }

    /// Starts the service on the policy directory `policies`.
    pub async fn spawn_in(policies: &Path, extra: &[&str]) -> TestApp {
        TestApp::try_spawn_in(policies, extra)
            .await
            .expect("the service starts")
    }

    /// Starts the service on the policy directory `policies`, or says why it would not start.
    pub async fn try_spawn_in(policies: &Path, extra: &[&str]) -> anyhow::Result<TestApp> {
        TestApp::try_spawn_on(fresh_database(shared_cluster()).await, policies, extra).await
    }

    /// Starts the service on `database` (migrated, perhaps holding data written before) and the
    /// policy directory `policies`, or says why it would not start.
    pub async fn try_spawn_on(
        database: sqlx::postgres::PgConnectOptions,
        policies: &Path,
        extra: &[&str],
    ) -> anyhow::Result<TestApp> {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let tokens = TokenIssuer::load();
        std::fs::write(dir.path().join("jwks.json"), tokens.jwks()).expect("writing the JWKS");
        let ca = CertificateAuthority::generate("finledger test CA").expect("a CA");
        write_pair(
            dir.path(),
            "server",
            &ca.issue(&Profile::server()).expect("a server certificate"),
        );
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("writing the CA");
        let path = |name: &str| dir.path().join(name).to_str().expect("a UTF-8 path").to_string();
        let mut arguments = vec![
            "finledger".to_string(),
            "--api-listen=127.0.0.1:0".to_string(),
            "--ops-listen=127.0.0.1:0".to_string(),
            format!("--tls-cert={}", path("server.crt")),
            format!("--tls-key={}", path("server.key")),
            format!("--tls-client-ca={}", path("ca.crt")),
            format!("--policies={}", policies.display()),
            format!("--jwks-file={}", path("jwks.json")),
            format!("--jwt-issuer={ISSUER}"),
            format!("--jwt-audience={AUDIENCE}"),
            format!("--data-dir={}", path("var")),
        ];
        arguments.extend(extra.iter().map(|a| a.to_string()));
        let clock = ManualClock::new();
        let application = start(&arguments, &database, &clock).await?;
        Ok(TestApp {
            port: application.api_address.port(),
            application: Some(application),
            ca,
            dir,
            clock,
            tokens,
            arguments,
            database,
        })
    }

    /// Stops the service and starts it again on the same database, files and clock (on a new port).
    pub async fn restart(&mut self) {
        if let Some(application) = self.application.take() {
            application.stop().await;
        }
        let application = start(&self.arguments, &self.database, &self.clock)
            .await
            .expect("the service starts again");
        self.port = application.api_address.port();
        self.application = Some(application);
    }

    /// Another instance of the service on the same database, settings and clock (on ports of its own).
    pub async fn start_another(&self) -> Application {
        start(&self.arguments, &self.database, &self.clock)
            .await
            .expect("another instance starts")
    }

    /// The database the service runs on.
    pub fn database(&self) -> &sqlx::postgres::PgConnectOptions {
        &self.database
    }

    /// A client of the instance listening on `port`, as `name`.
    pub fn client_at(&self, port: u16, kind: PrincipalKind, name: &str) -> ApiClient {
        let issued = self.issue_client(kind, name);
        let identity = Some((issued.cert_pem.as_str(), issued.key_pem.as_str()));
        ApiClient::new(port, client_config(&self.ca.cert_pem(), identity), Protocol::Http2)
    }

    /// A client certificate of the test CA for `name`, by SPIFFE ID and CN.
    pub fn issue_client(&self, kind: PrincipalKind, name: &str) -> Issued {
        self.ca
            .issue(&Profile::client(DEV_TRUST_DOMAIN, kind, name))
            .expect("a client certificate")
    }

    /// A client presenting `issued` (or no certificate).
    pub fn client_with(&self, issued: Option<&Issued>, protocol: Protocol) -> ApiClient {
        let identity = issued.map(|i| (i.cert_pem.as_str(), i.key_pem.as_str()));
        ApiClient::new(self.port, client_config(&self.ca.cert_pem(), identity), protocol)
    }

    /// A client for one of the principals in policies/principals.toml.
    pub fn client(&self, kind: PrincipalKind, name: &str) -> ApiClient {
        self.client_with(Some(&self.issue_client(kind, name)), Protocol::Http2)
    }

    /// The console acting for `user` with a token signed now by the test key (EdDSA), with or without
    /// multi-factor authentication.
    pub fn console_for(&self, user: &str, mfa: bool) -> ApiClient {
        let token = self.tokens.token_for(user, mfa, self.clock.now_s());
        self.client(PrincipalKind::Service, "console").with_bearer(&token)
    }

    /// The `payments` service: the usual caller.
    pub fn payments(&self) -> ApiClient {
        self.client(PrincipalKind::Service, "payments")
    }

    pub async fn stop(mut self) {
        if let Some(application) = self.application.take() {
            application.stop().await;
        }
    }
}

pub fn write_pair(dir: &Path, name: &str, issued: &Issued) {
    std::fs::write(dir.join(format!("{name}.crt")), &issued.cert_pem).expect("writing a certificate");
    std::fs::write(dir.join(format!("{name}.key")), &issued.key_pem).expect("writing a key");
}

async fn start(
    arguments: &[String],
    database: &sqlx::postgres::PgConnectOptions,
    clock: &ManualClock,
) -> anyhow::Result<Application> {
    let settings = Arguments::try_parse_from(arguments)
        .expect("valid test settings")
        .settings;
    let database = Database {
        options: database.clone(),
        local: None,
    };
    Application::start(&settings, database, clock.clock()).await
}
