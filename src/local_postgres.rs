//! A PostgreSQL cluster the service runs itself, from the system's server binaries.
//!
//! Used by `finledger serve` when no DATABASE_URL is given (data under ./var/pg, kept between runs),
//! and by the tests and benchmarks (a throw-away data directory each). The server listens only on a
//! Unix socket inside the cluster directory, so nothing else on the machine can reach it; when this
//! process runs as root the server runs as the `postgres` user, since PostgreSQL refuses root.
//!
//! The server is a child of a dedicated keeper thread that lives as long as this handle. The child is
//! started with a parent-death signal, so if this process dies (even by SIGKILL) the server shuts down
//! at once instead of lingering; the next start recovers from its WAL.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// How long a starting server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// The port number names the socket file; nothing listens on TCP.
const PORT: u16 = 5432;
const SUPERUSER: &str = "postgres";

/// Server settings: durability stays on (fsync, synchronous commit, full-page writes); the rest sizes
/// memory and WAL for batched writes of tens of thousands of rows per commit.
const SERVER_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", ""),
    ("fsync", "on"),
    ("synchronous_commit", "on"),
    ("full_page_writes", "on"),
    ("shared_buffers", "512MB"),
    ("wal_buffers", "64MB"),
    ("max_wal_size", "8GB"),
    ("checkpoint_timeout", "30min"),
    // A new WAL segment is otherwise written full of zeros before use: with max_wal_size this large, a
    // busy cluster creates new segments for gigabytes before it recycles any, and the zeroing cost ~10%
    // of CPU under batch load (perf: XLogFileInit). Without it a segment is sized by its last byte;
    // the WAL's fsync on commit still makes every acknowledged write durable.
    ("wal_init_zero", "off"),
    ("max_connections", "300"),
    ("log_min_messages", "warning"),
];

/// Where the server binaries are and which user runs them.
struct Installation {
    bin_dir: PathBuf,
    /// Some((uid, gid)) when this process is root and must drop to the `postgres` user.
    run_as: Option<(u32, u32)>,
}

impl Installation {
    fn find() -> anyhow::Result<Installation> {
        let bin_dir = find_bin_dir().context(
            "PostgreSQL server binaries (initdb, postgres) were not found in /usr/lib/postgresql/*/bin \
             or on PATH. Install them (Debian: `apt-get install postgresql-15`, which `make run` does) \
             or set DATABASE_URL to an existing server.",
        )?;
        let run_as = if nix::unistd::geteuid().is_root() {
            let user = nix::unistd::User::from_name(SUPERUSER)?.with_context(|| {
                format!("running as root, the local PostgreSQL must run as user `{SUPERUSER}`, which does not exist")
            })?;
            Some((user.uid.as_raw(), user.gid.as_raw()))
        } else {
            None
        };
        Ok(Installation { bin_dir, run_as })
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin_dir.join(program));
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }

    fn chown(&self, path: &Path) -> anyhow::Result<()> {
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to user {SUPERUSER}", path.display()))?;
        }
        Ok(())
    }
}

fn find_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("postgres").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| dir.join("postgres").is_file() && dir.join("initdb").is_file())
}

/// A running local cluster. Dropping it shuts the server down (fast shutdown) and waits for it.
pub struct LocalPostgres {
    socket_dir: PathBuf,
    /// Present while this handle owns the server (absent when it reused one already running).
    keeper: Mutex<Option<Keeper>>,
}

/// The line to the keeper thread: `stop` asks it to shut the server down, `stopped` says it has.
struct Keeper {
    stop: mpsc::Sender<()>,
    stopped: mpsc::Receiver<()>,
}

impl LocalPostgres {
    /// Creates the cluster under `dir` if needed, then starts it, or reuses a server already running
    /// on it. `dir` holds `data/` (the cluster), `run/` (the socket) and `postgres.log`.
    pub fn start(dir: &Path) -> anyhow::Result<LocalPostgres> {
        let installation = Installation::find()?;
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let dir = dir.canonicalize()?;
        let data_dir = dir.join("data");
        let socket_dir = dir.join("run");
        for path in [&dir, &socket_dir] {
            fs::create_dir_all(path)?;
            installation.chown(path)?;
        }
        fs::set_permissions(&socket_dir, fs::Permissions::from_mode(0o700))?;
        if !data_dir.join("PG_VERSION").is_file() {
            init_cluster(&installation, &data_dir, &dir.join("initdb.log"))?;
        }
        wait_out_shutdown(&data_dir)?;
        if server_is_running(&data_dir) {
            tracing::info!(data_dir = %data_dir.display(), "reusing the running local PostgreSQL");
            return Ok(LocalPostgres {
                socket_dir,
                keeper: Mutex::new(None),
            });
        }
        let bin_dir = installation.bin_dir.clone();
        let keeper = spawn_keeper(installation, data_dir, socket_dir.clone(), dir.join("postgres.log"))?;
        let postgres = LocalPostgres {
            socket_dir,
            keeper: Mutex::new(Some(keeper)),
        };
        postgres.wait_until_ready(&bin_dir)?;
        Ok(postgres)
    }

    /// Connection options for `database` as the superuser, over the cluster's socket.
    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        PgConnectOptions::new()
            .socket(&self.socket_dir)
            .port(PORT)
            .username(SUPERUSER)
            .database(database)
    }

    /// Creates `database` unless it exists.
    pub async fn create_database(&self, database: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            !database.is_empty() && database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "database names are limited to letters, digits and underscores: {database:?}"
        );
        let mut connection = PgConnection::connect_with(&self.connect_options("postgres")).await?;
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(database)
            .fetch_one(&mut connection)
            .await?;
        if !exists {
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                .execute(&mut connection)
                .await?;
        }
        Ok(())
    }

    /// Shuts the server down and waits for it to exit (a reused server is left running).
    pub fn stop(&mut self) {
        let keeper = self
            .keeper
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(keeper) = keeper {
            let _ = keeper.stop.send(());
            let _ = keeper.stopped.recv();
        }
    }

    /// Polls with `pg_isready`, which needs no async runtime, so this works from any context.
    fn wait_until_ready(&self, bin_dir: &Path) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let exited = match &*self.keeper.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) {
                Some(keeper) => keeper.stopped.try_recv().is_ok(),
                None => false,
            };
            if exited {
                bail!("the local PostgreSQL exited during start-up; see postgres.log beside its data directory");
            }
            let ready = Command::new(bin_dir.join("pg_isready"))
                .arg("--host")
                .arg(&self.socket_dir)
                .args(["--port", &PORT.to_string(), "--quiet"])
                .status()
                .context("running pg_isready")?;
            if ready.success() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the local PostgreSQL did not accept connections within {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn init_cluster(installation: &Installation, data_dir: &Path, log: &Path) -> anyhow::Result<()> {
    let log_file = fs::File::create(log)?;
    let status = installation
        .command("initdb")
        .arg("--pgdata")
        .arg(data_dir)
        .args([
            "--username",
            SUPERUSER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-instructions",
        ])
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .status()
        .context("running initdb")?;
    if !status.success() {
        bail!("initdb failed ({status}); see {}", log.display());
    }
    Ok(())
}

/// Whether a live postmaster owns `data_dir` (its pid file names a running process).
/// Waits (bounded) for a server that is shutting down (its owner died) to be gone: reusing it would
/// fail moments later.
fn wait_out_shutdown(data_dir: &Path) -> anyhow::Result<()> {
    let stopping = || {
        server_is_running(data_dir)
            && fs::read_to_string(data_dir.join("postmaster.pid")).is_ok_and(|pid_file| {
                pid_file
                    .lines()
                    .nth(7)
                    .is_some_and(|status| status.trim() == "stopping")
            })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while stopping() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the local PostgreSQL in {} has been shutting down for a minute",
            data_dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn server_is_running(data_dir: &Path) -> bool {
    let Ok(pid_file) = fs::read_to_string(data_dir.join("postmaster.pid")) else {
        return false;
    };
    let Some(pid) = pid_file.lines().next().and_then(|line| line.trim().parse::<i32>().ok()) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Starts the server from a thread that stays alive until asked to stop, so the parent-death signal
/// fires only when this process ends (it is tied to the spawning thread, not the process).
fn spawn_keeper(
    installation: Installation,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log: PathBuf,
) -> anyhow::Result<Keeper> {
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let (stopped_tx, stopped_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = mpsc::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("postgres-keeper".into())
        .spawn(move || {
            let child = spawn_server(&installation, &data_dir, &socket_dir, &log);
            let mut child = match child {
                Ok(child) => {
                    let _ = started_tx.send(Ok(()));
                    child
                }
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                    let _ = stopped_tx.send(());
                    return;
                }
            };
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                match stop_rx.recv_timeout(Duration::from_millis(200)) {
                    Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                        // SIGINT is PostgreSQL's fast shutdown: roll back sessions, checkpoint, exit.
                        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
                        let _ = child.wait();
                        break;
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            }
            let _ = stopped_tx.send(());
        })?;
    started_rx
        .recv()
        .context("the PostgreSQL keeper thread ended early")??;
    Ok(Keeper {
        stop: stop_tx,
        stopped: stopped_rx,
    })
}

fn spawn_server(installation: &Installation, data_dir: &Path, socket_dir: &Path, log: &Path) -> anyhow::Result<Child> {
    let log_file = fs::OpenOptions::new().create(true).append(true).open(log)?;
    installation.chown(log)?;
    let mut command = installation.command("postgres");
    command.arg("-D").arg(data_dir).arg("-p").arg(PORT.to_string());
    command
        .arg("-c")
        .arg(format!("unix_socket_directories={}", socket_dir.display()));
    for (name, value) in SERVER_SETTINGS {
        command.arg("-c").arg(format!("{name}={value}"));
    }
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    // SAFETY: prctl is async-signal-safe and touches only this (forked, not yet exec'd) process.
    unsafe {
        command.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGQUIT).map_err(std::io::Error::from)
        });
    }
    command.spawn().context("starting postgres")
}
