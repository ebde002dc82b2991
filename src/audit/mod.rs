//! The tamper-evident audit log: events (pure), the hash chain (pure), the
//! sled store, its write-ahead file, the group-committing writer and
//! resident pseudonyms.

pub mod applier;
pub mod blocks;
pub mod cases;
pub mod chain;
pub mod checkpoint;
pub mod evaluation;
pub mod event;
pub mod export;
pub mod filter;
pub mod pseudonym;
pub mod query;
pub mod residents;
pub mod retention;
pub mod stats;
pub mod store;
pub mod suite;
pub mod tree;
pub mod wal;
pub mod writer;

pub use event::{Event, EventBody, EventKind, Outcome};
pub use pseudonym::Pseudonymizer;
pub use store::{AuditError, AuditStore};
pub use writer::{AuditWriter, WriterOptions};
