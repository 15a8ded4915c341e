//! Power-loss durability for sled, with group commit.
//!
//! sled's flush writes its buffers with `sync_file_range`, which survives the
//! process dying but not a power cut or a kernel crash: it reaches neither the
//! disk's cache nor the file's metadata, and sled writes its large values
//! (`blobs/`) with no sync at all. [`GroupSync::sync`] therefore flushes sled
//! and then `fdatasync`s its data file, `fsync`s every blob file and snapshot
//! that appeared since the last sync, and the directories whose entries
//! changed. Only then may a write be acknowledged.
//!
//! Group commit: a caller takes a ticket once its commit is in sled, then
//! waits for the sync lock. Whoever holds the lock syncs for every ticket
//! issued before it started, so a burst of concurrent writers shares one
//! flush and one `fdatasync`, and a caller whose ticket a sync already
//! covered returns without touching the disk.
//!
//! A nudger watches the flush. sled 0.34 has a race: a flush that starts
//! waiting for a buffer whose asynchronous write then fails is never woken
//! (the failure is recorded without waking the waiters), though any later
//! flush sees the failure and wakes them all. So while a flush has been
//! under way for [`NUDGE_AFTER`], the nudger flushes again from a
//! short-lived thread, every [`NUDGE_AFTER`], until it returns.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// How long a flush may be under way before the nudger flushes again.
pub(super) const NUDGE_AFTER: Duration = Duration::from_millis(500);

/// Flushes the store's buffers to its files.
pub(super) type Flush = Box<dyn Fn() -> io::Result<()> + Send + Sync>;

/// What the last sync left on disk.
#[derive(Debug, Default)]
struct Synced {
    /// Every ticket up to this one is durable.
    ticket: u64,
    /// Names in the data directory and in `blobs/` at the last sync.
    top: HashSet<OsString>,
    blobs: HashSet<OsString>,
}

pub(super) struct GroupSync {
    dir: PathBuf,
    /// sled's data file (`db`), open for syncing.
    data: File,
    flush: Flush,
    issued: AtomicU64,
    synced: Mutex<Synced>,
    /// When the flush under way began (`None`: none is).
    flushing_since: Mutex<Option<Instant>>,
}

/// The names in `dir` (none when it does not exist).
fn names(dir: &Path) -> io::Result<HashSet<OsString>> {
    match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.map(|e| e.file_name())).collect(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(HashSet::new()),
        Err(e) => Err(e),
    }
}

/// `fsync`s a directory, so that the entries it gained or lost are durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    match File::open(dir) {
        Ok(d) => d.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// `fsync`s the files of `dir` named in `now` but not in `before`, then the
/// directory itself if its entries changed. A file that went away meanwhile
/// (sled removes old blobs and snapshots) needs no sync.
fn sync_new(dir: &Path, before: &HashSet<OsString>, now: &HashSet<OsString>) -> io::Result<()> {
    if before == now {
        return Ok(());
    }
    for name in now.difference(before) {
        let path = dir.join(name);
        if path.is_dir() {
            continue;
        }
        match File::open(&path) {
            Ok(file) => file.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    sync_dir(dir)
}

impl GroupSync {
    /// For the sled database in `dir`, which sled has opened (so its files
    /// exist), flushed by `flush`. Makes everything there now durable, the
    /// directory included, and starts the nudger, which ends once the
    /// returned `GroupSync` is dropped.
    pub(super) fn new(dir: &Path, flush: Flush) -> io::Result<Arc<GroupSync>> {
        let data = File::open(dir.join("db"))?;
        let sync = Arc::new(GroupSync {
            dir: dir.to_path_buf(),
            data,
            flush,
            issued: AtomicU64::new(0),
            synced: Mutex::new(Synced::default()),
            flushing_since: Mutex::new(None),
        });
        // Everything sled created on open, whatever its name, as if new.
        let mut synced = sync.synced.lock();
        sync.sync_files(&mut synced)?;
        if let Some(parent) = dir.parent() {
            sync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            })?;
        }
        drop(synced);
        let watched = Arc::downgrade(&sync);
        std::thread::Builder::new()
            .name("lodestone-nudger".into())
            .spawn(move || nudge(watched))?;
        Ok(sync)
    }

    /// The data file, new blob files and snapshots, and changed directories.
    fn sync_files(&self, synced: &mut Synced) -> io::Result<()> {
        self.data.sync_data()?;
        let blobs_dir = self.dir.join("blobs");
        let blobs = names(&blobs_dir)?;
        sync_new(&blobs_dir, &synced.blobs, &blobs)?;
        synced.blobs = blobs;
        let top = names(&self.dir)?;
        sync_new(&self.dir, &synced.top, &top)?;
        synced.top = top;
        Ok(())
    }

    /// Makes every commit that completed before this call durable against a
    /// power cut: flushes the store and syncs its files, or returns once
    /// another caller's sync has. Blocking.
    pub(super) fn sync(&self) -> io::Result<()> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock();
        if synced.ticket >= ticket {
            return Ok(());
        }
        // Every ticket issued by now belongs to a commit that is in sled
        // already: this one flush and sync covers them all.
        let covered = self.issued.load(Ordering::SeqCst);
        *self.flushing_since.lock() = Some(Instant::now());
        let flushed = (self.flush)();
        *self.flushing_since.lock() = None;
        flushed?;
        if !skips_the_sync() {
            self.sync_files(&mut synced)?;
        }
        synced.ticket = covered;
        Ok(())
    }
}

/// Debug builds only, for the power-cut test that shows it would catch the
/// loss: `LODESTONE_UNSAFE_SKIP_SYNC=1` acknowledges writes after sled's
/// flush without syncing the files. Release builds have no such switch.
#[cfg(debug_assertions)]
fn skips_the_sync() -> bool {
    static SKIP: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SKIP.get_or_init(|| {
        let skip = std::env::var("LODESTONE_UNSAFE_SKIP_SYNC").is_ok_and(|v| v == "1");
        if skip {
            tracing::warn!(
                "LODESTONE_UNSAFE_SKIP_SYNC=1: writes are acknowledged without a sync and may be lost in a power cut"
            );
        }
        skip
    })
}

#[cfg(not(debug_assertions))]
fn skips_the_sync() -> bool {
    false
}

/// The nudger: while a flush of `watched` has been under way for
/// [`NUDGE_AFTER`], flushes again from a thread of its own (see the module's
/// comment); ends once `watched` is gone.
fn nudge(watched: Weak<GroupSync>) {
    loop {
        std::thread::sleep(NUDGE_AFTER / 2);
        let Some(sync) = watched.upgrade() else {
            return;
        };
        let stalled = sync
            .flushing_since
            .lock()
            .is_some_and(|since| since.elapsed() >= NUDGE_AFTER);
        if stalled {
            // Its own thread: this flush may wait as long as the first.
            let flush_again = sync.clone();
            let _ = std::thread::Builder::new()
                .name("lodestone-nudge".into())
                .spawn(move || {
                    if let Err(error) = (flush_again.flush)() {
                        tracing::debug!(%error, "a nudging flush failed");
                    }
                });
            std::thread::sleep(NUDGE_AFTER);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Condvar;
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    fn sled_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::create_dir_all(path.join("blobs")).unwrap();
        std::fs::write(path.join("db"), b"log").unwrap();
        (dir, path)
    }

    fn counting(flushes: &Arc<AtomicUsize>) -> Flush {
        let flushes = flushes.clone();
        Box::new(move || {
            flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }

    #[test]
    fn a_sync_covers_every_ticket_issued_before_it_and_later_callers_share_it() {
        let (_dir, path) = sled_dir();
        let flushes = Arc::new(AtomicUsize::new(0));
        let sync = GroupSync::new(&path, counting(&flushes)).unwrap();
        // Eight callers arrive while the lock is held: they share one flush.
        let held = sync.synced.lock();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let sync = sync.clone();
                std::thread::spawn(move || sync.sync().unwrap())
            })
            .collect();
        while sync.issued.load(Ordering::SeqCst) < 8 {
            std::thread::yield_now();
        }
        drop(held);
        for caller in callers {
            caller.join().unwrap();
        }
        // The first to take the lock saw all eight tickets and covered them.
        let flushed = flushes.load(Ordering::SeqCst);
        assert_eq!(flushed, 1, "{flushed} flushes for 8 callers");
        assert_eq!(sync.synced.lock().ticket, 8);
        // A caller after them all flushes again: its commit is newer.
        sync.sync().unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), flushed + 1);
    }

    #[test]
    fn new_blob_files_are_noticed_and_a_failed_flush_is_reported() {
        let (_dir, path) = sled_dir();
        let fail = Arc::new(AtomicBool::new(false));
        let failing = fail.clone();
        let sync = GroupSync::new(
            &path,
            Box::new(move || {
                if failing.load(Ordering::SeqCst) {
                    Err(io::Error::other("disk full"))
                } else {
                    Ok(())
                }
            }),
        )
        .unwrap();
        std::fs::write(path.join("blobs").join("42"), b"large value").unwrap();
        sync.sync().unwrap();
        assert!(sync.synced.lock().blobs.contains(&OsString::from("42")));
        fail.store(true, Ordering::SeqCst);
        assert_eq!(sync.sync().unwrap_err().to_string(), "disk full");
        // A failed sync covers nothing: the next caller tries again.
        fail.store(false, Ordering::SeqCst);
        sync.sync().unwrap();
        assert_eq!(sync.synced.lock().ticket, 3);
    }

    /// sled's race, modelled: a flush that waits is woken only by a later
    /// flush. With nobody else writing, the nudger's flush wakes it.
    #[test]
    fn a_flush_left_waiting_is_woken_by_the_nudger() {
        let (_dir, path) = sled_dir();
        let woken = Arc::new((Mutex::new(false), Condvar::new()));
        let calls = Arc::new(AtomicUsize::new(0));
        let (w, c) = (woken.clone(), calls.clone());
        let sync = GroupSync::new(
            &path,
            Box::new(move || {
                let (flag, wake) = &*w;
                if c.fetch_add(1, Ordering::SeqCst) == 0 {
                    // The first flush waits until another one comes along.
                    let mut woken = flag.lock();
                    while !*woken {
                        wake.wait(&mut woken);
                    }
                    Err(io::Error::other("the buffer's write failed"))
                } else {
                    *flag.lock() = true;
                    wake.notify_all();
                    Err(io::Error::other("the buffer's write failed"))
                }
            }),
        )
        .unwrap();
        // On a thread of its own, so that a regression fails the test
        // instead of hanging it.
        let (done, answer) = std::sync::mpsc::channel();
        let syncing = sync.clone();
        std::thread::spawn(move || done.send(syncing.sync()));
        let failed = answer
            .recv_timeout(Duration::from_secs(60))
            .expect("the waiting flush is woken")
            .unwrap_err();
        assert_eq!(failed.to_string(), "the buffer's write failed");
        assert!(calls.load(Ordering::SeqCst) >= 2, "the nudger flushed");
    }

    /// The nudger holds its store only for a moment, so dropping the store
    /// closes it (sled's files are locked while any handle lives).
    #[test]
    fn the_nudger_does_not_keep_its_store_alive() {
        let (_dir, path) = sled_dir();
        let flushes = Arc::new(AtomicUsize::new(0));
        let sync = GroupSync::new(&path, counting(&flushes)).unwrap();
        let watched = Arc::downgrade(&sync);
        drop(sync);
        std::thread::sleep(NUDGE_AFTER);
        assert!(watched.upgrade().is_none(), "nothing holds the store");
    }
}
