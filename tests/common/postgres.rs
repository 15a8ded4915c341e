//! A throwaway PostgreSQL cluster for one test binary: started on first use
//! in a temporary directory on a free port (as the unprivileged `postgres`
//! user when the tests run as root, since PostgreSQL refuses root), one
//! database per test, and stopped and removed when the binary exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// A running cluster.
pub struct Cluster {
    root: PathBuf,
    pub port: u16,
    /// The user the cluster's processes run as, when not ourselves.
    run_as: Option<String>,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

/// The binary's cluster, started on first use; `None` (and the calling test
/// recorded as skipped) where PostgreSQL is not installed.
pub fn cluster() -> Option<&'static Cluster> {
    super::outside_tool(
        "initdb",
        &["--version"],
        "PostgreSQL (initdb, pg_ctl, postgres)",
    )?;
    CLUSTER.get_or_init(|| Some(Cluster::start())).as_ref()
}

extern "C" fn stop_at_exit() {
    if let Some(Some(cluster)) = CLUSTER.get() {
        cluster.stop("immediate");
        let _ = std::fs::remove_dir_all(&cluster.root);
    }
}

impl Cluster {
    fn start() -> Cluster {
        let root = tempfile::Builder::new()
            .prefix("lodestone-postgres-")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        // SAFETY: geteuid has no preconditions.
        let run_as = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let ids = |flag: &str| -> u32 {
                let out = Command::new("id")
                    .args([flag, user])
                    .output()
                    .expect("id runs");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("the user {user} exists to run PostgreSQL as"))
            };
            std::os::unix::fs::chown(&root, Some(ids("-u")), Some(ids("-g")))
                .expect("the cluster directory is handed to the postgres user");
        }
        let port = super::free_port();
        let cluster = Cluster { root, port, run_as };
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data().to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        cluster.start_again();
        // SAFETY: registers a plain function to run at exit.
        unsafe { libc::atexit(stop_at_exit) };
        cluster
    }

    /// Starts the cluster (again, after `stop`), waiting until it answers.
    pub fn start_again(&self) {
        // fsync off: this cluster is thrown away, and these tests are about
        // the contract, not about PostgreSQL's own durability.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync=off \
             -c shared_buffers=64MB",
            self.port,
            self.root.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-o",
                &options,
                "-l",
                &self.root.join("log").to_string_lossy(),
                "-w",
                "-t",
                "120",
                "start",
            ],
        );
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    /// Runs a PostgreSQL program as the cluster's user; panics, with its
    /// output, when it fails.
    fn run(&self, program: &str, args: &[&str]) {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        };
        let out = command
            .args(args)
            .current_dir(&self.root)
            .output()
            .unwrap_or_else(|e| panic!("{program} runs: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the cluster (`mode`: smart, fast or immediate).
    pub fn stop(&self, mode: &str) {
        let mut command = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", "pg_ctl"]);
                c
            }
            None => Command::new("pg_ctl"),
        };
        let _ = command
            .args([
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                mode,
                "-w",
                "stop",
            ])
            .output();
    }

    /// The URL of database `name` in this cluster.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` unless it exists; returns its URL.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("the test cluster answers");
        let driver = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await
            .expect("the catalogue reads")
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await
                .expect("a test database is created");
        }
        drop(client);
        let _ = driver.await;
        self.url(name)
    }
}

impl Cluster {
    /// `database`, from synchronous code (on a thread of its own).
    pub fn database_blocking(&'static self, name: &str) -> String {
        let name = name.to_string();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime")
                .block_on(self.database(&name))
        })
        .join()
        .expect("the database is created")
    }
}

/// The database of a test's data directory: one per directory, so that a
/// test that restarts its server on the same directory finds its records.
pub fn database_name(dir: &Path) -> String {
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("t{name}")
}
