//! Integration tests: the real server, real TLS, a real HTTPS client.
//! One test binary (one link step on a 2-core machine).
// Test code: a panic is how a helper reports a failure.
#![allow(unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod alerts;
mod audit_log;
mod audit_review;
mod auth;
mod backup;
mod batch;
mod cases;
mod changes;
mod cli;
mod cluster;
mod cluster_e2e;
mod console;
mod crash;
mod data_objections;
mod gm_suite;
mod helpers;
mod hostile;
mod idempotency;
mod jwks;
mod lookup;
mod ops;
mod pg;
mod proof;
mod records;
mod requires;
mod residents;
mod revocation;
mod sharing;
mod suspension;
mod tls;
mod upstream;
mod verify;
