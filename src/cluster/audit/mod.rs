//! The central copy of every node's audit chain in PostgreSQL: the shipper
//! that streams this node's durable events there, and the reader that
//! verifies each node's copy (`tongban audit verify --cluster`).
//!
//! Each node's own chain stays the record that requests wait for
//! (fail-closed, durable in its write-ahead file before an answer leaves).
//! The shipper copies what the node's applier has filed in sled, in order,
//! a bounded batch at a time: each batch is one
//! transaction that inserts its events (`ON CONFLICT DO NOTHING`: shipping
//! is at-least-once, the table holds each `(node_id, seq)` once), the
//! checkpoints they reach, and the node's new shipped-through mark, so a
//! crash anywhere resumes from the last committed batch. Events are stored
//! as their sealed bytes (what the chain hashes) beside searchable columns
//! decoded from them; verification recomputes the chain from the bytes and
//! checks that the columns say what the bytes say.

mod prune;
mod read;
mod ship;
mod verify;

pub use prune::{CentralPruneReport, PrunedNode, PrunedPartition};
pub use read::{ClusterPage, ExportSection, Position};
pub use ship::ShipState;
pub use verify::NodeVerifyReport;
