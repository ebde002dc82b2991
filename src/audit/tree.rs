//! What the audit trees share: the store's error and the key that orders
//! events, blocks and index entries by sequence number.
//!
//! Invariant: every tree keyed by sequence number uses the big-endian
//! eight-byte key, so that sled's key order is the chain's order.

/// The audit store failed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// sled reported an error.
    #[error("audit store: {0}")]
    Store(#[from] sled::Error),
    /// The log file could not be synced.
    #[error("audit log sync: {0}")]
    Sync(#[from] std::io::Error),
    /// A stored event could not be decoded.
    #[error("audit event {seq}: {message}")]
    Corrupt {
        /// Its sequence number.
        seq: u64,
        /// What is wrong.
        message: String,
    },
    /// The writer has stopped; nothing can be made durable.
    #[error("the audit writer is not running")]
    WriterStopped,
    /// sled has not filed every durable event (it refused them, or is slow).
    #[error("the audit store is behind its write-ahead file")]
    Behind,
}

/// A big-endian sequence number from a key (shorter keys are left-padded).
pub(crate) fn key_seq(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = bytes.len().min(8);
    b[8 - n..].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(b)
}
