//! The test binary's throwaway PostgreSQL cluster (see
//! `lodestone::tools::throwaway`): started on first use, one database per test,
//! stopped and removed when the binary exits. Writes are not synced
//! (`fsync` off): these tests are about the contract, not about
//! PostgreSQL's own durability.

use std::path::Path;
use std::sync::OnceLock;

pub use lodestone::tools::throwaway::PostgresCluster as Cluster;

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

/// The binary's cluster, started on first use; `None` (and the calling test
/// recorded as skipped) where PostgreSQL is not installed.
pub fn cluster() -> Option<&'static Cluster> {
    super::outside_tool(
        "initdb",
        &["--version"],
        "PostgreSQL (initdb, pg_ctl, postgres)",
    )?;
    CLUSTER
        .get_or_init(|| {
            let cluster = Cluster::start(false).expect("a throwaway PostgreSQL cluster starts");
            // SAFETY: registers a plain function to run at exit.
            unsafe { libc::atexit(remove_at_exit) };
            Some(cluster)
        })
        .as_ref()
}

extern "C" fn remove_at_exit() {
    if let Some(Some(cluster)) = CLUSTER.get() {
        cluster.remove();
    }
}

/// Database `name` of the binary's cluster, created unless it exists.
pub async fn database(cluster: &Cluster, name: &str) -> String {
    cluster
        .database(name)
        .await
        .expect("the test cluster makes a database")
}

/// `database`, from synchronous code (on a thread of its own).
pub fn database_blocking(cluster: &'static Cluster, name: &str) -> String {
    let name = name.to_string();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(database(cluster, &name))
    })
    .join()
    .expect("the database is created")
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
