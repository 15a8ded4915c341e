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

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

/// What the last sync left on disk.
#[derive(Debug, Default)]
struct Synced {
    /// Every ticket up to this one is durable.
    ticket: u64,
    /// Names in the data directory and in `blobs/` at the last sync.
    top: HashSet<OsString>,
    blobs: HashSet<OsString>,
}

#[derive(Debug)]
pub struct GroupSync {
    dir: PathBuf,
    /// sled's data file (`db`), open for syncing.
    data: File,
    issued: AtomicU64,
    synced: Mutex<Synced>,
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
    /// exist). Makes everything there now durable, the directory included.
    pub fn new(dir: &Path) -> io::Result<GroupSync> {
        let data = File::open(dir.join("db"))?;
        let sync = GroupSync {
            dir: dir.to_path_buf(),
            data,
            issued: AtomicU64::new(0),
            synced: Mutex::new(Synced::default()),
        };
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
    /// power cut: flushes sled with `flush` and syncs its files, or returns
    /// once another caller's sync has. Blocking.
    pub fn sync(&self, flush: impl FnOnce() -> io::Result<()>) -> io::Result<()> {
        let ticket = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let mut synced = self.synced.lock();
        if synced.ticket >= ticket {
            return Ok(());
        }
        // Every ticket issued by now belongs to a commit that is in sled
        // already: this one flush and sync covers them all.
        let covered = self.issued.load(Ordering::SeqCst);
        flush()?;
        self.sync_files(&mut synced)?;
        synced.ticket = covered;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::Arc;

    fn sled_dir() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        std::fs::create_dir_all(path.join("blobs")).unwrap();
        std::fs::write(path.join("db"), b"log").unwrap();
        (dir, path)
    }

    #[test]
    fn a_sync_covers_every_ticket_issued_before_it_and_later_callers_share_it() {
        let (_dir, path) = sled_dir();
        let sync = Arc::new(GroupSync::new(&path).unwrap());
        let flushes = Arc::new(AtomicUsize::new(0));
        // Eight callers arrive while the lock is held: they share one flush.
        let held = sync.synced.lock();
        let callers: Vec<_> = (0..8)
            .map(|_| {
                let (sync, flushes) = (sync.clone(), flushes.clone());
                std::thread::spawn(move || {
                    sync.sync(|| {
                        flushes.fetch_add(1, Ordering::SeqCst);
                        Ok(())
                    })
                    .unwrap()
                })
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
        sync.sync(|| {
            flushes.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .unwrap();
        assert_eq!(flushes.load(Ordering::SeqCst), flushed + 1);
    }

    #[test]
    fn new_blob_files_are_noticed_and_a_failed_flush_is_reported() {
        let (_dir, path) = sled_dir();
        let sync = GroupSync::new(&path).unwrap();
        std::fs::write(path.join("blobs").join("42"), b"large value").unwrap();
        sync.sync(|| Ok(())).unwrap();
        assert!(sync.synced.lock().blobs.contains(&OsString::from("42")));
        let failed = sync.sync(|| Err(io::Error::other("disk full")));
        assert_eq!(failed.unwrap_err().to_string(), "disk full");
        // A failed sync covers nothing: the next caller tries again.
        sync.sync(|| Ok(())).unwrap();
        assert_eq!(sync.synced.lock().ticket, 3);
    }
}
