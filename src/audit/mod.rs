//! The tamper-evident audit log: events (pure), the hash chain (pure), the
//! sled store, the group-committing writer and resident pseudonyms.

pub mod chain;
pub mod event;
pub mod pseudonym;
pub mod store;
pub mod writer;

pub use event::{Event, EventBody, EventKind, Outcome};
pub use pseudonym::Pseudonymizer;
pub use store::{AuditError, AuditStore};
pub use writer::{AuditWriter, WriterOptions};
