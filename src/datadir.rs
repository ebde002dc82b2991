//! Opening the data directory's sled database. sled holds an exclusive
//! lock on its file and lets it go when its last handle is dropped, which
//! its background flusher does when it next wakes: a moment after the
//! process closed the database. Opening waits for that moment (at most
//! [`LOCK_WAIT`]), so that a process which closed the database and opens it
//! again (a demo home prepared, then served; a test that reopens) is not
//! refused by its own lock; another process holding it is still refused,
//! after the wait.

use std::path::Path;
use std::time::{Duration, Instant};

/// The longest an open waits for the lock.
pub const LOCK_WAIT: Duration = Duration::from_secs(10);

/// Opens the database `config` describes, waiting for its lock.
pub fn open(config: &sled::Config) -> sled::Result<sled::Db> {
    let started = Instant::now();
    loop {
        match config.open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < LOCK_WAIT =>
            {
                std::thread::sleep(Duration::from_millis(25));
            }
            other => return other,
        }
    }
}

/// Opens the database at `path` with sled's defaults, waiting for its lock.
pub fn open_path(path: &Path) -> sled::Result<sled::Db> {
    open(&sled::Config::new().path(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_waits_for_a_lock_let_go_of_a_moment_later() {
        let dir = tempfile::tempdir().unwrap();
        let db = open_path(dir.path()).unwrap();
        // sled itself refuses while the lock is held, even in this process.
        assert!(sled::open(dir.path()).is_err());
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(db);
        });
        let started = Instant::now();
        let again = open_path(dir.path()).expect("opened once the lock was let go");
        assert!(started.elapsed() >= Duration::from_millis(200));
        holder.join().unwrap();
        drop(again);
    }
}

/// `fdatasync`s sled's file in `data_dir`: sled's own flush does not reach
/// the device's cache, so a store whose writes must survive a power cut
/// syncs the file itself after flushing.
pub fn sync_db_file(data_dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(data_dir.join("db"))?.sync_data()
}

/// Why one of the small stores kept in the data directory on a single node
/// and in PostgreSQL in cluster mode (review marks, objections, sharing
/// requests) cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// This node's store or disk.
    #[error(transparent)]
    Local(#[from] std::io::Error),
    /// PostgreSQL.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::store::ClusterError),
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        Self::Local(e.into())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::Local(std::io::Error::other(e))
    }
}
