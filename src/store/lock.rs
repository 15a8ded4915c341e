//! One server per data directory. sled refuses a second opener with an
//! error about a lock it could not acquire; before it is asked, the server
//! takes its own lock on `lodestone.lock` in the directory and, when another
//! process holds it, says so in words a person can act on.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::domain::Error;

/// The lock's file name inside the data directory.
const LOCK_FILE: &str = "lodestone.lock";

/// Held for as long as the server uses the directory; released on drop (and
/// by the operating system when the process dies, so a crash leaves no stale
/// lock behind).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Creates `dir` when missing and locks it for this process.
    pub fn acquire(dir: &Path) -> Result<DataDirLock, Error> {
        std::fs::create_dir_all(dir).map_err(|e| {
            Error::Storage(format!(
                "cannot create the data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::Storage(format!("cannot open {}: {e}", path.display())))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => String::new(),
                    pid => format!(" (pid {pid})"),
                };
                return Err(in_use(dir, &holder));
            }
            Err(TryLockError::Error(e)) => {
                return Err(Error::Storage(format!(
                    "cannot lock {}: {e}",
                    path.display()
                )))
            }
        }
        // Who holds it, for the message a second server prints.
        let pid = std::process::id().to_string();
        let written = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(pid.as_bytes()))
            .and_then(|()| file.sync_data());
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot note the pid in the lock file");
        }
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The error of a directory another server uses.
pub(super) fn in_use(dir: &Path, holder: &str) -> Error {
    Error::Storage(format!(
        "another server{holder} is using the data directory {}: stop it, or give this one \
         another --data-dir",
        dir.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_directory_is_refused_with_the_holder_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let second = DataDirLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            second.contains("another server (pid ")
                && second.contains("is using the data directory"),
            "{second}"
        );
        assert!(second.contains(&std::process::id().to_string()), "{second}");
        drop(first);
        DataDirLock::acquire(dir.path()).expect("free again once the first is dropped");
    }
}
