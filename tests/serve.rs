//! `finledger serve` as an operator runs it: zero configuration, health checks, a clean stop on
//! SIGTERM that also stops the PostgreSQL it started, and a second run that reuses the same data.

mod helpers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use helpers::client::{ApiClient, Protocol, client_config};
use hyper::{Method, StatusCode};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sqlx::{Connection, PgConnection};

fn serve(data_dir: &Path, port: u16) -> Child {
    let policies = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    serve_with_api(data_dir, port, helpers::free_port(), &policies)
}

fn serve_with_api(data_dir: &Path, port: u16, api_port: u16, policies: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_finledger"))
        .arg("serve")
        .env_remove("DATABASE_URL")
        .env("FINLEDGER_POLICIES", policies)
        .env("FINLEDGER_DATA_DIR", data_dir)
        .env("FINLEDGER_OPS_LISTEN", format!("127.0.0.1:{port}"))
        .env("FINLEDGER_API_LISTEN", format!("127.0.0.1:{api_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting finledger serve")
}

/// GET `path` on the operations port; `None` while nothing listens.
fn get(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

/// Waits (bounded) until /readyz answers 200, i.e. the embedded database is up and migrated.
fn wait_ready(child: &mut Child, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "finledger serve exited during start-up"
        );
        if get(port, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            return;
        }
        assert!(Instant::now() < deadline, "finledger serve did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap()
}

fn postmaster_running(data_dir: &Path) -> bool {
    let Ok(pid_file) = std::fs::read_to_string(data_dir.join("pg/data/postmaster.pid")) else {
        return false;
    };
    let pid: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn local_connection(data_dir: &Path) -> PgConnection {
    let options = sqlx::postgres::PgConnectOptions::new()
        .socket(data_dir.join("pg/run"))
        .port(5432)
        .username("postgres")
        .database("finledger");
    PgConnection::connect_with(&options)
        .await
        .expect("connecting to the embedded PostgreSQL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_on_embedded_postgres_stops_cleanly_and_reuses_its_data() {
    let data_dir = helpers::cluster_dir("serve");
    let port = helpers::free_port();

    let mut first = serve(&data_dir, port);
    wait_ready(&mut first, port);
    assert!(get(port, "/healthz").unwrap().ends_with("ok\n"));
    let mut connection = local_connection(&data_dir).await;
    sqlx::query("UPDATE ledger_head SET batch_seq = 41 WHERE id = 1")
        .execute(&mut connection)
        .await
        .unwrap();
    connection.close().await.unwrap();
    let status = terminate(first);
    assert!(status.success(), "SIGTERM ends serve with exit 0, got {status}");
    assert!(
        !postmaster_running(&data_dir),
        "the embedded PostgreSQL stopped with the service"
    );

    let mut second = serve(&data_dir, port);
    wait_ready(&mut second, port);
    let mut connection = local_connection(&data_dir).await;
    let batch_seq: i64 = sqlx::query_scalar("SELECT batch_seq FROM ledger_head")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    // One batch more: the start-up's record of the policy set in effect.
    assert_eq!(batch_seq, 42, "the second run uses the same data");
    connection.close().await.unwrap();
    assert!(terminate(second).success());
    assert!(!postmaster_running(&data_dir));
}

/// `name`'s client configuration from the PKI directory as it is now.
fn pki_config(data_dir: &Path, name: &str) -> rustls::ClientConfig {
    let read = |file: &str| std::fs::read_to_string(data_dir.join("pki").join(file)).unwrap();
    client_config(
        &read("ca.crt"),
        Some((&read(&format!("{name}.crt")), &read(&format!("{name}.key")))),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_certificates_and_policies_without_dropping_open_connections() {
    let data_dir = helpers::cluster_dir("reload");
    let policies = helpers::copy_policies(&data_dir);
    let (port, api_port) = (helpers::free_port(), helpers::free_port());
    let mut child = serve_with_api(&data_dir, port, api_port, &policies);
    wait_ready(&mut child, port);
    let old_config = pki_config(&data_dir, "payments");
    let before = ApiClient::new(api_port, old_config.clone(), Protocol::Http2);
    assert_eq!(before.get("/v1/openapi.json").await.status, StatusCode::OK);

    // A whole new PKI: new CA, new server and client certificates.
    let rotated = Command::new(env!("CARGO_BIN_EXE_finledger"))
        .args(["certs", "init", "--force", "--out"])
        .arg(data_dir.join("pki"))
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", String::from_utf8_lossy(&rotated.stderr));
    // And a policy that stops account creation.
    std::fs::write(
        policies.join("freeze.cedar"),
        "@id(\"freeze\")\nforbid (principal, action == Action::\"account.create\", resource);\n",
    )
    .unwrap();
    kill(Pid::from_raw(child.id() as i32), Signal::SIGHUP).unwrap();

    let after = ApiClient::new(api_port, pki_config(&data_dir, "payments"), Protocol::Http2);
    let deadline = Instant::now() + Duration::from_secs(30);
    while after
        .send(Method::GET, "/v1/openapi.json", "application/json", Vec::new())
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the new certificates were not taken up after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The connection opened before the reload still serves; the old PKI opens no new ones.
    assert_eq!(before.get("/v1/openapi.json").await.status, StatusCode::OK);
    let stale = ApiClient::new(api_port, old_config, Protocol::Http2);
    assert!(
        stale
            .send(Method::GET, "/v1/openapi.json", "application/json", Vec::new())
            .await
            .is_err()
    );

    // The new policy set takes effect (the reload runs beside the certificates' one).
    let mut n = 0u32;
    loop {
        n += 1;
        let account =
            serde_json::json!({"id": format!("00000000-0000-4000-8000-{n:012}"), "currency": "USD", "code": 1});
        let answer = after.post("/v1/accounts", &account).await;
        if answer.status == StatusCode::FORBIDDEN {
            assert_eq!(
                answer.body["policy_ids"],
                serde_json::json!(["freeze"]),
                "{}",
                answer.text
            );
            break;
        }
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        assert!(
            Instant::now() < deadline,
            "the new policies were not taken up after SIGHUP"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(terminate(child).success());
}
