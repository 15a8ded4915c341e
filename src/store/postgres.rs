//! The store on PostgreSQL, which any number of replicas share.
//!
//! Tables (see `migrations/`): `lodestone_head` (one row: the revision and
//! the licence log's head), `lodestone_records` (every record as of the
//! head), `lodestone_changes` (the change feed: each revision's records, in
//! parts), `lodestone_log` (the licence change log) and `lodestone_audit`
//! (each revision's author, request and records).
//!
//! A writer's turn is a transaction that has locked the head row: writers
//! on every replica wait for each other there, so commit order is revision
//! order, and revisions and log sequences come out contiguous. The turn
//! commits its whole batch at once with `synchronous_commit` on, so a write
//! is acknowledged only once PostgreSQL has flushed it. Replicas follow the
//! change feed to keep their views current; a `NOTIFY` wakes them, and a
//! poll covers notifications lost while a connection was down.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tracing::Instrument;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio::sync::{watch, Notify};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::{AsyncMessage, NoTls, Socket};

use super::codec::{
    decode_audit, decode_change, decode_feed, decode_record, encode_audit, encode_change,
    encode_feed, encode_record,
};
use super::{BoxFuture, Committed, FeedEntry, LogBounds, Snapshot, Store, Turn, WriteSet};
use crate::domain::audit::{micros, AuditEntry, AuditQuery};
use crate::domain::changelog::{license_change, LicenseChange};
use crate::domain::record::{Kind, RecordKey};
use crate::domain::Error;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// The channel on which commits notify the replicas.
const CHANNEL: &str = "lodestone_changes";
/// Rows per statement of a large commit, and changes per feed part.
const CHUNK: usize = 5_000;
/// Key of the advisory lock that lets one replica migrate at a time.
const MIGRATION_LOCK: i64 = 0x4c6f_6465_7374_6f6e; // "Lodeston"

/// How to reach the database.
#[derive(Clone, Debug)]
pub struct PostgresConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?PARAMS]` (or
    /// `postgresql://`, or libpq's `key=value` form). Besides
    /// tokio-postgres's parameters, `sslmode=verify-ca`/`verify-full` (TLS,
    /// with the server's certificate verified, as always here) and
    /// `sslrootcert=FILE` (the CA to trust) are understood.
    pub url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long a write or read waits for a connection before it is
    /// refused as `UNAVAILABLE`.
    pub connect_timeout: Duration,
}

impl PostgresConfig {
    pub fn new(url: impl Into<String>) -> PostgresConfig {
        PostgresConfig {
            url: url.into(),
            pool_size: 16,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password, for logs.
fn redacted(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports = config.get_ports();
    // One port for every host, or one for all.
    let addresses: Vec<String> = hosts
        .iter()
        .enumerate()
        .map(|(i, host)| match ports.get(i).or(ports.first()) {
            Some(port) => format!("{host}:{port}"),
            None => host.clone(),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        addresses.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// Splits off the TLS parameters that tokio-postgres does not parse.
fn split_tls_parameters(url: &str) -> (String, Option<PathBuf>, bool) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_string(), None, false);
    };
    let mut kept = Vec::new();
    let mut root = None;
    let mut verify = false;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("sslrootcert", path)) => root = Some(PathBuf::from(path)),
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                verify = true;
                kept.push("sslmode=require".to_string());
            }
            _ => kept.push(pair.to_string()),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, root, verify)
}

/// The TLS client configuration: the system's roots, and `root` if given.
fn rustls_config(root: Option<&PathBuf>) -> Result<rustls::ClientConfig, Error> {
    let bad = |what: String| Error::Storage(format!("TLS to the database: {what}"));
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = root {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read {}: {e}", path.display())))?;
        for cert in certs {
            let cert = cert.map_err(|e| bad(format!("{}: {e}", path.display())))?;
            roots
                .add(cert)
                .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// What this process last knew of the shared head and log.
#[derive(Clone, Copy, Debug, Default)]
struct Known {
    revision: u64,
    log_head: u64,
    log_oldest: u64,
}

impl Known {
    fn raise(&mut self, revision: u64, log_head: u64) {
        self.revision = self.revision.max(revision);
        self.log_head = self.log_head.max(log_head);
        self.log_oldest = self.log_oldest.max(1);
    }
}

struct Pg {
    pool: Pool,
    known: Mutex<Known>,
    changed: Arc<Notify>,
    /// Whether the database answers, as the listener's connection finds.
    reachable: watch::Sender<bool>,
    /// The task that listens for other replicas' commits.
    listener: tokio::task::JoinHandle<()>,
    /// The task that prunes the change feed.
    pruner: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Where the database is, without its password.
    name: String,
}

impl Drop for Pg {
    fn drop(&mut self) {
        self.listener.abort();
        if let Some(pruner) = self.pruner.lock().take() {
            pruner.abort();
        }
    }
}

/// The PostgreSQL store, shared with the writer's turns.
#[derive(Clone)]
pub struct PostgresStore(Arc<Pg>);

impl PostgresStore {
    /// A handle that does not keep the store open (for its own tasks).
    fn clone_weak(&self) -> std::sync::Weak<Pg> {
        Arc::downgrade(&self.0)
    }
}

/// How often each replica prunes the change feed, and what it keeps: the
/// newest revisions, and every revision younger than the age.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
const FEED_KEEP_REVISIONS: u64 = 10_000;
const FEED_KEEP_AGE: Duration = Duration::from_secs(15 * 60);

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::DatabaseUnavailable(format!("{what}: {e}"))
}

/// A database error. A lost connection or a timeout, and the database's
/// errors that say it cannot serve now ([`transient`]), are the database
/// being unavailable: the call is refused with `UNAVAILABLE` and the next
/// one takes a new connection. The database's other refusals are storage
/// failures.
fn db(what: &'static str) -> impl Fn(tokio_postgres::Error) -> Error {
    move |e| match e.as_db_error() {
        Some(d) if transient(d.code()) => {
            unavailable(what, format!("{}: {}", d.code().code(), d.message()))
        }
        Some(d) => Error::Storage(format!("{what}: {}: {}", d.code().code(), d.message())),
        None => unavailable(what, e),
    }
}

/// The SQLSTATEs of a database that cannot serve now but may in a moment:
/// connection exceptions (class 08); operator intervention (57: a
/// connection terminated, as when the postmaster dies or an operator ends
/// it, 57P01, a crash or a shutdown under way, a query cancelled);
/// insufficient resources (53: too many connections, out of memory or
/// disk); a transaction rolled back for a serialization failure or a
/// deadlock (40); the database's own system errors (58); and a read-only
/// transaction (25006), as on a standby that is not yet promoted.
fn transient(state: &tokio_postgres::error::SqlState) -> bool {
    let code = state.code();
    ["08", "57", "53", "40", "58"]
        .iter()
        .any(|class| code.starts_with(class))
        || code == "25006"
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn uint(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl PostgresStore {
    /// Connects, creates or migrates the schema (one replica at a time),
    /// and starts listening for other replicas' commits.
    pub async fn connect(config: &PostgresConfig) -> Result<PostgresStore, Error> {
        let (url, root, _verify) = split_tls_parameters(&config.url);
        let mut pg_config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| Error::Storage(format!("the database URL does not parse: {e}")))?;
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("lodestone");
        }
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(config.connect_timeout);
        }
        let name = redacted(&pg_config);
        let changed = Arc::new(Notify::new());
        let reachable = watch::channel(true).0;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let (manager, listener) = if pg_config.get_ssl_mode() == SslMode::Disable {
            (
                Manager::from_config(pg_config.clone(), NoTls, manager_config),
                tokio::spawn(listen(pg_config, NoTls, changed.clone(), reachable.clone())),
            )
        } else {
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls_config(root.as_ref())?);
            (
                Manager::from_config(pg_config.clone(), tls.clone(), manager_config),
                tokio::spawn(listen(pg_config, tls, changed.clone(), reachable.clone())),
            )
        };
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.connect_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| Error::Storage(format!("the database pool: {e}")))?;
        let store = PostgresStore(Arc::new(Pg {
            pool,
            known: Mutex::new(Known::default()),
            changed,
            reachable,
            listener,
            pruner: Mutex::new(None),
            name,
        }));
        store.migrate().await?;
        let pruning = store.clone_weak();
        store.0.pruner.lock().replace(tokio::spawn(async move {
            loop {
                tokio::time::sleep(PRUNE_EVERY).await;
                let Some(store) = pruning.upgrade().map(PostgresStore) else {
                    return;
                };
                match store.prune_feed(FEED_KEEP_REVISIONS, FEED_KEEP_AGE).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::debug!(removed, "pruned the change feed"),
                    Err(error) => tracing::debug!(%error, "pruning the change feed failed"),
                }
            }
        }));
        let known = store.read_known().await?;
        *store.0.known.lock() = known;
        tracing::info!(
            database = %store.0.name,
            revision = known.revision,
            log_head = known.log_head,
            "store opened"
        );
        Ok(store)
    }

    /// Removes the change feed's revisions that every running replica has
    /// long applied: those older than `keep_age` beyond the newest
    /// `keep_revisions`. A replica that was away longer (cut off, not
    /// restarted: a restart loads every record anyway) finds the gap and
    /// loads every record again. Returns how many rows went.
    pub async fn prune_feed(&self, keep_revisions: u64, keep_age: Duration) -> Result<u64, Error> {
        let client = self.client().await?;
        let removed = client
            .execute(
                "DELETE FROM lodestone_changes WHERE \
                 revision <= (SELECT revision FROM lodestone_head WHERE id = 1) - $1 \
                 AND committed_at < now() - make_interval(secs => $2)",
                &[&int(keep_revisions), &keep_age.as_secs_f64()],
            )
            .await
            .map_err(db("pruning the change feed"))?;
        Ok(removed)
    }

    async fn client(&self) -> Result<Object, Error> {
        self.0
            .pool
            .get()
            .await
            .map_err(|e| unavailable(&format!("cannot reach {}", self.0.name), e))
    }

    /// Creates or migrates the schema. Replicas that start together take
    /// turns: the first migrates, the others find it done.
    async fn migrate(&self) -> Result<(), Error> {
        let mut client = self.client().await?;
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(db("taking the migration lock"))?;
        let report = embedded::migrations::runner()
            .set_migration_table_name("lodestone_migrations")
            .run_async(&mut **client)
            .await;
        let unlocked = client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await;
        let report =
            report.map_err(|e| Error::Storage(format!("migrating the database schema: {e}")))?;
        unlocked.map_err(db("releasing the migration lock"))?;
        for migration in report.applied_migrations() {
            tracing::info!(
                version = migration.version(),
                name = migration.name(),
                "migrated the database schema"
            );
        }
        Ok(())
    }

    async fn read_known(&self) -> Result<Known, Error> {
        let client = self.client().await?;
        let row = client
            .query_one(
                "SELECT h.revision, h.log_head, \
                 COALESCE((SELECT min(sequence) FROM lodestone_log), h.log_head + 1) \
                 FROM lodestone_head h WHERE h.id = 1",
                &[],
            )
            .await
            .map_err(db("reading the head"))?;
        Ok(Known {
            revision: uint(row.get(0)),
            log_head: uint(row.get(1)),
            log_oldest: uint(row.get(2)),
        })
    }
}

/// How often the listener's connection checks that the database answers,
/// and how long it waits for the answer.
const CHECK_EVERY: Duration = Duration::from_secs(1);
const CHECK_WITHIN: Duration = Duration::from_secs(3);

/// Listens for commits on a connection of its own and wakes the replica's
/// follower for each; reconnects by itself. After every (re)connection it
/// wakes the follower too, for what was committed while it was away. It
/// also tells whether the database answers: a query every [`CHECK_EVERY`]
/// that must come back within [`CHECK_WITHIN`] (a connection cut off
/// without a reset would otherwise look alive for hours).
async fn listen<T>(
    config: tokio_postgres::Config,
    tls: T,
    changed: Arc<Notify>,
    reachable: watch::Sender<bool>,
) where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync,
    T::TlsConnect: Send + Sync,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = tokio::time::timeout(CHECK_WITHIN, config.connect(tls.clone())).await;
        if let Ok(Ok((client, mut connection))) = connected {
            // The connection is driven here; the checks run beside it.
            let checks = async {
                let statement = format!("LISTEN {CHANNEL}");
                let listened =
                    tokio::time::timeout(CHECK_WITHIN, client.batch_execute(&statement)).await;
                if !matches!(listened, Ok(Ok(()))) {
                    return;
                }
                if reachable.send_if_modified(|up| !std::mem::replace(up, true)) {
                    tracing::info!("the database answers again");
                }
                backoff = Duration::from_millis(100);
                changed.notify_one();
                loop {
                    tokio::time::sleep(CHECK_EVERY).await;
                    let answered =
                        tokio::time::timeout(CHECK_WITHIN, client.simple_query("SELECT 1")).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return;
                    }
                }
            };
            let driving = async {
                loop {
                    match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        Some(Ok(AsyncMessage::Notification(_))) => changed.notify_one(),
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return,
                    }
                }
            };
            tokio::select! {
                () = checks => {}
                () = driving => {}
            }
        }
        if reachable.send_if_modified(|up| std::mem::replace(up, false)) {
            tracing::warn!("the database does not answer; writes are refused until it does");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// The feed's rows, grouped by revision.
fn feed_entries(rows: Vec<tokio_postgres::Row>) -> Result<Vec<FeedEntry>, Error> {
    let mut entries: Vec<FeedEntry> = Vec::new();
    for row in rows {
        let revision = uint(row.get(0));
        let log_head = uint(row.get(1));
        let body: &[u8] = row.get(2);
        let changes = decode_feed(body)?;
        match entries.last_mut() {
            Some(entry) if entry.revision == revision => entry.changes.extend(changes),
            _ => entries.push(FeedEntry {
                revision,
                changes,
                log_head,
            }),
        }
    }
    Ok(entries)
}

/// The feed after `$1`, `$2` revisions from the first one held: a replica
/// whose next revision was pruned sees the gap (and reloads) rather than
/// nothing.
const SELECT_FEED: &str = "SELECT revision, log_head, body FROM lodestone_changes \
     WHERE revision > $1 AND revision <= \
     (SELECT min(revision) FROM lodestone_changes WHERE revision > $1) + $2 - 1 \
     AND revision <= $3 ORDER BY revision, part";

impl Store for PostgresStore {
    fn revision(&self) -> u64 {
        self.0.known.lock().revision
    }

    fn log_bounds(&self) -> LogBounds {
        let known = self.0.known.lock();
        LogBounds {
            oldest: known.log_oldest.max(1),
            head: known.log_head,
        }
    }

    fn changed(&self) -> Option<Arc<Notify>> {
        Some(self.0.changed.clone())
    }

    fn reachable(&self) -> Option<watch::Receiver<bool>> {
        Some(self.0.reachable.subscribe())
    }

    fn latest(&self) -> BoxFuture<'_, Result<(u64, u64), Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT revision, log_head FROM lodestone_head WHERE id = 1",
                    &[],
                )
                .await
                .map_err(db("reading the head"))?;
            Ok((uint(row.get(0)), uint(row.get(1))))
        })
    }

    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn Turn>, Error>> {
        Box::pin(async move {
            if !*self.0.reachable.borrow() {
                // Refused at once, not after the pool's timeout.
                return Err(Error::DatabaseUnavailable(format!(
                    "{} does not answer",
                    self.0.name
                )));
            }
            let client = self.client().await?;
            let mut turn = PgTurn {
                store: self.clone(),
                client: Some(client),
                head: 0,
                log_head: 0,
            };
            let client = turn.client.as_ref().expect("just set");
            client
                .batch_execute("BEGIN; SET LOCAL synchronous_commit TO on")
                .await
                .map_err(db("starting a write"))?;
            let row = client
                .query_one(
                    "SELECT revision, log_head FROM lodestone_head WHERE id = 1 FOR UPDATE",
                    &[],
                )
                .await
                .map_err(db("locking the head"))?;
            turn.head = uint(row.get(0));
            turn.log_head = uint(row.get(1));
            Ok(Box::new(turn) as Box<dyn Turn>)
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, Error>> {
        Box::pin(async move {
            let mut client = self.client().await?;
            let transaction = client
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db("starting a snapshot"))?;
            let head = transaction
                .query_one(
                    "SELECT revision, log_head FROM lodestone_head WHERE id = 1",
                    &[],
                )
                .await
                .map_err(db("reading the head"))?;
            let rows = transaction
                .query("SELECT body FROM lodestone_records ORDER BY kind, id", &[])
                .await
                .map_err(db("reading the records"))?;
            transaction
                .commit()
                .await
                .map_err(db("ending a snapshot"))?;
            let records = rows
                .iter()
                .map(|row| decode_record(row.get(0)))
                .collect::<Result<Vec<_>, Error>>()?;
            let (revision, log_head) = (uint(head.get(0)), uint(head.get(1)));
            self.0.known.lock().raise(revision, log_head);
            Ok(Snapshot {
                revision,
                records,
                log_head,
            })
        })
    }

    fn feed(&self, after: u64, limit: usize) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(SELECT_FEED, &[&int(after), &int(limit as u64), &i64::MAX])
                .await
                .map_err(db("reading the change feed"))?;
            let entries = feed_entries(rows)?;
            if let Some(last) = entries.last() {
                self.0.known.lock().raise(last.revision, last.log_head);
            }
            Ok(entries)
        })
    }

    fn read_log(
        &self,
        after: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<LicenseChange>, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT body FROM lodestone_log WHERE sequence > $1 ORDER BY sequence LIMIT $2",
                    &[&int(after), &int(limit as u64)],
                )
                .await
                .map_err(db("reading the licence log"))?;
            rows.iter().map(|row| decode_change(row.get(0))).collect()
        })
    }

    fn read_audit(
        &self,
        query: AuditQuery,
        limit: usize,
    ) -> BoxFuture<'_, Result<Vec<AuditEntry>, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let rows = client
                .query(
                    "SELECT body FROM lodestone_audit WHERE revision > $1 \
                     AND ($2::timestamptz IS NULL OR recorded_at >= $2) \
                     AND ($3::timestamptz IS NULL OR recorded_at < $3) \
                     ORDER BY revision LIMIT $4",
                    &[
                        &int(query.after_revision),
                        &query.from,
                        &query.before,
                        &int(limit as u64),
                    ],
                )
                .await
                .map_err(db("reading the audit trail"))?;
            rows.iter().map(|row| decode_audit(row.get(0))).collect()
        })
    }

    fn oldest_audited(&self) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "SELECT COALESCE(min(revision), 0) FROM lodestone_audit",
                    &[],
                )
                .await
                .map_err(db("reading the audit trail"))?;
            Ok(uint(row.get(0)))
        })
    }

    fn compact_log(&self, through: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(async move {
            let client = self.client().await?;
            let row = client
                .query_one(
                    "WITH gone AS (DELETE FROM lodestone_log WHERE sequence <= \
                     LEAST($1, (SELECT log_head FROM lodestone_head WHERE id = 1)) \
                     RETURNING sequence, revision), \
                     audit_gone AS (DELETE FROM lodestone_audit \
                     WHERE revision <= (SELECT max(revision) FROM gone)) \
                     SELECT count(*), COALESCE(max(sequence), 0) FROM gone",
                    &[&int(through)],
                )
                .await
                .map_err(db("compacting the licence log"))?;
            let (removed, last) = (uint(row.get(0)), uint(row.get(1)));
            let mut known = self.0.known.lock();
            known.log_oldest = known.log_oldest.max(last + 1);
            Ok(removed)
        })
    }

    fn flush(&self) -> BoxFuture<'_, Result<(), Error>> {
        // Every commit was flushed by PostgreSQL before it was acknowledged.
        Box::pin(async { Ok(()) })
    }
}

/// The writer's turn: a transaction holding the head row's lock.
struct PgTurn {
    store: PostgresStore,
    /// The connection, while the transaction is open.
    client: Option<Object>,
    head: u64,
    log_head: u64,
}

impl Drop for PgTurn {
    fn drop(&mut self) {
        // A turn that ends without committing (nothing to commit, a failed
        // plan, a caller gone) rolls back before its connection is reused.
        if let Some(client) = self.client.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    runtime.spawn(async move {
                        if client.batch_execute("ROLLBACK").await.is_err() {
                            // Never back into the pool in an unknown state.
                            drop(Object::take(client));
                        }
                    });
                }
                Err(_) => drop(Object::take(client)),
            }
        }
    }
}

/// A record's final state in a batch: the revision that stored it and its
/// encoding, or `None` when removed.
type FinalState = Option<(u64, Vec<u8>)>;

/// The rows a batch writes.
#[derive(Default)]
struct Rows {
    /// The final state of each record the batch touched.
    records: HashMap<(Kind, String), FinalState>,
    /// Feed parts: revision, part, log head, body.
    feed: Vec<(i64, i32, i64, Vec<u8>)>,
    /// Log entries: sequence, revision, time, body.
    log: Vec<(i64, i64, SystemTime, Vec<u8>)>,
    /// Audit entries: revision, time, body.
    audit: Vec<(i64, SystemTime, Vec<u8>)>,
}

impl Turn for PgTurn {
    fn head(&self) -> u64 {
        self.head
    }

    fn catch_up(&mut self, after: u64) -> BoxFuture<'_, Result<Vec<FeedEntry>, Error>> {
        Box::pin(async move {
            let client = self.client.as_ref().expect("the turn is open");
            let rows = client
                .query(
                    SELECT_FEED,
                    &[&int(after), &int(self.head - after), &int(self.head)],
                )
                .await
                .map_err(db("reading the change feed"))?;
            let entries = feed_entries(rows)?;
            if let Some(last) = entries.last() {
                self.store
                    .0
                    .known
                    .lock()
                    .raise(last.revision, last.log_head);
            }
            Ok(entries)
        })
    }

    fn commit(
        mut self: Box<Self>,
        sets: Vec<WriteSet>,
    ) -> BoxFuture<'static, Result<Vec<Committed>, Error>> {
        Box::pin(async move {
            let client = self.client.as_ref().expect("the turn is open");
            // Never recorded before the revision before: the trail's times
            // rise with its revisions, whichever replica's clock wrote them.
            let newest = client
                .query_opt(
                    "SELECT recorded_at FROM lodestone_audit ORDER BY revision DESC LIMIT 1",
                    &[],
                )
                .await
                .map_err(db("reading the audit trail"))?
                .map(|row| row.get::<_, SystemTime>(0));
            let now = micros(SystemTime::now());
            let recorded_at = newest.map_or(now, |newest| newest.max(now));
            let mut rows = Rows::default();
            let mut committed = Vec::with_capacity(sets.len());
            let mut revision = self.head;
            let mut log_head = self.log_head;
            for mut set in sets {
                revision += 1;
                let mut license_changes = Vec::new();
                for change in &mut set.changes {
                    if let Some(record) = change.new.as_mut() {
                        record.set_revision(revision);
                    }
                    if let Some(logged) = license_change(
                        change,
                        log_head + 1,
                        revision,
                        recorded_at,
                        &set.by.author.name,
                    ) {
                        log_head = logged.sequence;
                        rows.log.push((
                            int(log_head),
                            int(revision),
                            recorded_at,
                            encode_change(&logged),
                        ));
                        license_changes.push(logged);
                    }
                    let RecordKey { kind, id } = change.key();
                    let state = change.new.as_ref().map(|r| (revision, encode_record(r)));
                    rows.records.insert((kind, id), state);
                }
                let audited = AuditEntry::of(&set.changes, revision, recorded_at, &set.by);
                rows.audit
                    .push((int(revision), recorded_at, encode_audit(&audited)));
                for (part, chunk) in set.changes.chunks(CHUNK).enumerate() {
                    rows.feed.push((
                        int(revision),
                        part as i32,
                        int(log_head),
                        encode_feed(chunk),
                    ));
                }
                committed.push(Committed {
                    revision,
                    license_changes,
                });
            }
            write_rows(client, rows).await?;
            client
                .execute(
                    "UPDATE lodestone_head SET revision = $1, log_head = $2 WHERE id = 1",
                    &[&int(revision), &int(log_head)],
                )
                .await
                .map_err(db("moving the head"))?;
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&CHANNEL, &revision.to_string()],
                )
                .await
                .map_err(db("notifying the replicas"))?;
            let client = self.client.take().expect("the turn is open");
            // COMMIT returns once the WAL is flushed (synchronous_commit).
            let synced = client
                .batch_execute("COMMIT")
                .instrument(tracing::info_span!("sync", store = "postgres"))
                .await;
            if let Err(e) = synced {
                // The outcome is unknown if the connection went: the next
                // turn's catch-up finds out.
                drop(Object::take(client));
                return Err(db("committing")(e));
            }
            self.store.0.known.lock().raise(revision, log_head);
            Ok(committed)
        })
    }
}

/// Writes a batch's rows in statements of at most [`CHUNK`] rows.
async fn write_rows(client: &Object, rows: Rows) -> Result<(), Error> {
    let mut stored: Vec<(i16, String, i64, Vec<u8>)> = Vec::new();
    let mut removed: Vec<(i16, String)> = Vec::new();
    for ((kind, id), state) in rows.records {
        match state {
            Some((revision, body)) => stored.push((kind as i16, id, int(revision), body)),
            None => removed.push((kind as i16, id)),
        }
    }
    let upsert = client
        .prepare_cached(
            "INSERT INTO lodestone_records (kind, id, revision, body) \
             SELECT * FROM UNNEST($1::int2[], $2::text[], $3::int8[], $4::bytea[]) \
             ON CONFLICT (kind, id) DO UPDATE SET revision = EXCLUDED.revision, body = EXCLUDED.body",
        )
        .await
        .map_err(db("preparing a statement"))?;
    for chunk in stored.chunks(CHUNK) {
        let kinds: Vec<i16> = chunk.iter().map(|r| r.0).collect();
        let ids: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
        let revisions: Vec<i64> = chunk.iter().map(|r| r.2).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.3.as_slice()).collect();
        client
            .execute(&upsert, &[&kinds, &ids, &revisions, &bodies])
            .await
            .map_err(db("storing records"))?;
    }
    let delete = client
        .prepare_cached(
            "DELETE FROM lodestone_records r USING UNNEST($1::int2[], $2::text[]) AS d(kind, id) \
             WHERE r.kind = d.kind AND r.id = d.id",
        )
        .await
        .map_err(db("preparing a statement"))?;
    for chunk in removed.chunks(CHUNK) {
        let kinds: Vec<i16> = chunk.iter().map(|r| r.0).collect();
        let ids: Vec<&str> = chunk.iter().map(|r| r.1.as_str()).collect();
        client
            .execute(&delete, &[&kinds, &ids])
            .await
            .map_err(db("removing records"))?;
    }
    let feed = client
        .prepare_cached(
            "INSERT INTO lodestone_changes (revision, part, log_head, body) \
             SELECT * FROM UNNEST($1::int8[], $2::int4[], $3::int8[], $4::bytea[])",
        )
        .await
        .map_err(db("preparing a statement"))?;
    // Feed parts are large already: a few per statement.
    for chunk in rows.feed.chunks(16) {
        let revisions: Vec<i64> = chunk.iter().map(|r| r.0).collect();
        let parts: Vec<i32> = chunk.iter().map(|r| r.1).collect();
        let heads: Vec<i64> = chunk.iter().map(|r| r.2).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.3.as_slice()).collect();
        client
            .execute(&feed, &[&revisions, &parts, &heads, &bodies])
            .await
            .map_err(db("appending to the change feed"))?;
    }
    let log = client
        .prepare_cached(
            "INSERT INTO lodestone_log (sequence, revision, recorded_at, body) \
             SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::timestamptz[], $4::bytea[])",
        )
        .await
        .map_err(db("preparing a statement"))?;
    for chunk in rows.log.chunks(CHUNK) {
        let sequences: Vec<i64> = chunk.iter().map(|r| r.0).collect();
        let revisions: Vec<i64> = chunk.iter().map(|r| r.1).collect();
        let times: Vec<SystemTime> = chunk.iter().map(|r| r.2).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.3.as_slice()).collect();
        client
            .execute(&log, &[&sequences, &revisions, &times, &bodies])
            .await
            .map_err(db("appending to the licence log"))?;
    }
    let audit = client
        .prepare_cached(
            "INSERT INTO lodestone_audit (revision, recorded_at, body) \
             SELECT * FROM UNNEST($1::int8[], $2::timestamptz[], $3::bytea[])",
        )
        .await
        .map_err(db("preparing a statement"))?;
    for chunk in rows.audit.chunks(CHUNK) {
        let revisions: Vec<i64> = chunk.iter().map(|r| r.0).collect();
        let times: Vec<SystemTime> = chunk.iter().map(|r| r.1).collect();
        let bodies: Vec<&[u8]> = chunk.iter().map(|r| r.2.as_slice()).collect();
        client
            .execute(&audit, &[&revisions, &times, &bodies])
            .await
            .map_err(db("appending to the audit trail"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use tokio_postgres::config::TargetSessionAttrs;
    use tokio_postgres::error::SqlState;

    #[test]
    fn a_url_of_a_primary_and_its_standby_names_each_and_asks_for_the_writable_one() {
        let url = "postgres://lodestone:secret@db-a:5432,db-b:5433/lodestone?target_session_attrs=read-write";
        let config = tokio_postgres::Config::from_str(url).unwrap();
        assert_eq!(
            super::redacted(&config),
            "postgres://lodestone@db-a:5432,db-b:5433/lodestone"
        );
        assert_eq!(
            config.get_target_session_attrs(),
            TargetSessionAttrs::ReadWrite
        );
        let one_port = tokio_postgres::Config::from_str("postgres://u@a,b:6000/x").unwrap();
        assert_eq!(super::redacted(&one_port), "postgres://u@a:5432,b:6000/x");
    }

    #[test]
    fn a_database_that_cannot_serve_now_is_told_from_one_that_refuses() {
        for code in [
            "57P01", "57P02", "57P03", "08006", "53300", "40001", "40P01", "25006",
        ] {
            assert!(super::transient(&SqlState::from_code(code)), "{code}");
        }
        for code in ["23505", "42P01", "22P02", "XX000", "25001"] {
            assert!(!super::transient(&SqlState::from_code(code)), "{code}");
        }
    }
}
