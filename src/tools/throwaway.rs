//! A throwaway PostgreSQL cluster, for the tests and the benchmark: made in
//! a temporary directory with `initdb`, served on a free port of loopback
//! with `pg_ctl`, as the unprivileged `postgres` user when run as root
//! (PostgreSQL refuses to run as root), and stopped and removed on drop.
//! Needs PostgreSQL's programs (`initdb`, `pg_ctl`, `postgres`) on the PATH.
//! A cluster can be a streaming standby of another (`pg_basebackup`), made
//! synchronous, promoted, and rebuilt as the standby of its successor: a
//! failover as a platform team runs one.

use std::io;
use std::path::PathBuf;
use std::process::Command;

pub struct PostgresCluster {
    root: PathBuf,
    pub port: u16,
    /// The user the cluster's processes run as, when not this process's.
    run_as: Option<String>,
    /// Whether PostgreSQL syncs its writes to disk (`fsync`): on for
    /// figures that mean something, off for tests about the contract.
    fsync: bool,
}

impl PostgresCluster {
    /// Whether PostgreSQL's programs are here.
    pub fn available() -> bool {
        Command::new("initdb")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// Makes and starts a cluster, waiting until it answers.
    pub fn start(fsync: bool) -> io::Result<PostgresCluster> {
        let cluster = PostgresCluster::unmade(fsync)?;
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Makes a streaming standby of `primary` on a port of its own (a base
    /// backup with the standby's configuration), and starts it.
    pub fn standby_of(primary: &PostgresCluster) -> io::Result<PostgresCluster> {
        let cluster = PostgresCluster::unmade(primary.fsync)?;
        cluster.base_backup_of(primary)?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// Throws this cluster's data away (it is stopped at once first) and
    /// makes it a streaming standby of `primary`, as after a failover the
    /// old primary is rebuilt to follow the new one.
    pub fn rebuild_as_standby_of(&self, primary: &PostgresCluster) -> io::Result<()> {
        self.stop("immediate");
        let data = self.root.join("data");
        if data.exists() {
            std::fs::remove_dir_all(&data)?;
        }
        self.base_backup_of(primary)?;
        self.start_again()
    }

    fn base_backup_of(&self, primary: &PostgresCluster) -> io::Result<()> {
        let port = primary.port.to_string();
        self.run(
            "pg_basebackup",
            &[
                "-D",
                &self.data(),
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        )
    }

    /// Makes every commit wait until a standby has flushed it
    /// (`synchronous_standby_names = '*'`), or stops it waiting.
    pub async fn synchronous(&self, on: bool) -> Result<(), tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let names = if on { "*" } else { "" };
        // Two statements: ALTER SYSTEM refuses to run in a transaction.
        client
            .batch_execute(&format!(
                "ALTER SYSTEM SET synchronous_standby_names = '{names}'"
            ))
            .await?;
        client.batch_execute("SELECT pg_reload_conf()").await?;
        drop(client);
        let _ = driver.await;
        Ok(())
    }

    /// How many standbys stream from this cluster synchronously
    /// (`pg_stat_replication.sync_state = 'sync'`).
    pub async fn synchronous_standbys(&self) -> Result<i64, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'",
                &[],
            )
            .await?;
        drop(client);
        let _ = driver.await;
        Ok(row.get(0))
    }

    /// Kills the cluster's postmaster with `SIGKILL`, as when its machine
    /// dies; its backends end as they notice.
    pub fn kill_postmaster(&self) -> io::Result<()> {
        let pid_file = self.root.join("data").join("postmaster.pid");
        let pid: i32 = std::fs::read_to_string(pid_file)?
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| io::Error::other("postmaster.pid holds no pid"))?;
        // SAFETY: kill has no memory preconditions.
        if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Promotes a standby to primary, waiting until it takes writes.
    pub fn promote(&self) -> io::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-w", "-t", "120", "promote"],
        )
    }

    /// A cluster not made yet: its directory (owned by the cluster's user)
    /// and a free port.
    fn unmade(fsync: bool) -> io::Result<PostgresCluster> {
        let root = tempfile::Builder::new()
            .prefix("lodestone-postgres-")
            .tempdir()?
            .keep();
        // SAFETY: geteuid has no preconditions.
        let run_as = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let id = |flag: &str| -> io::Result<u32> {
                let out = Command::new("id").args([flag, user]).output()?;
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .map_err(|_| io::Error::other(format!("no user {user} to run PostgreSQL as")))
            };
            std::os::unix::fs::chown(&root, Some(id("-u")?), Some(id("-g")?))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        Ok(PostgresCluster {
            root,
            port,
            run_as,
            fsync,
        })
    }

    fn data(&self) -> String {
        self.root.join("data").to_string_lossy().into_owned()
    }

    /// A command running `program` as the cluster's user.
    fn command(&self, program: &str) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--", program]);
                c
            }
            None => Command::new(program),
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> io::Result<()> {
        let out = self
            .command(program)
            .args(args)
            .current_dir(&self.root)
            .output()?;
        if out.status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "{program} {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }

    /// Starts the cluster (again, after [`PostgresCluster::stop`]),
    /// waiting until it answers. A standby retries its primary every 200 ms
    /// (`wal_retrieve_retry_interval`, 5 s by default, which a promotion
    /// after the primary's death can wait out).
    pub fn start_again(&self) -> io::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=400 -c fsync={} \
             -c shared_buffers=128MB -c wal_retrieve_retry_interval=200ms",
            self.port,
            self.root.display(),
            if self.fsync { "on" } else { "off" },
        );
        let log = self.root.join("log").to_string_lossy().into_owned();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "-t",
                "120",
                "start",
            ],
        )
    }

    /// Stops the cluster: `mode` is `smart`, `fast` or `immediate` (as a
    /// crash would).
    pub fn stop(&self, mode: &str) {
        let _ = self
            .command("pg_ctl")
            .args(["-D", &self.data(), "-m", mode, "-w", "stop"])
            .output();
    }

    /// The URL of database `name`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates database `name` unless it exists; returns its URL.
    pub async fn database(&self, name: &str) -> Result<String, tokio_postgres::Error> {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(connection);
        let exists = client
            .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
            .await?
            .is_some();
        if !exists {
            client
                .batch_execute(&format!("CREATE DATABASE \"{}\"", name.replace('"', "")))
                .await?;
        }
        drop(client);
        let _ = driver.await;
        Ok(self.url(name))
    }

    /// Stops the cluster at once and removes its directory.
    pub fn remove(&self) {
        self.stop("immediate");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        self.remove();
    }
}
