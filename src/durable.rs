//! Durable changes to the gateway's own sled database outside the audit log
//! (the emergency stops). sled's `flush` writes its file without an `fsync`
//! (sled issue #1452): a change that must survive a power cut before it is
//! answered is flushed and then its file synced.

use std::path::Path;

/// Flushes `tree` and syncs sled's file in `data_dir` (which holds `db`).
pub fn sync_tree(tree: &sled::Tree, data_dir: &Path) -> Result<(), sled::Error> {
    crate::faults::point(data_dir, "stops.flush")?;
    tree.flush()?;
    crate::faults::point(data_dir, "stops.sync")?;
    std::fs::File::open(data_dir.join("db"))?.sync_data()?;
    Ok(())
}
