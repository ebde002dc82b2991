//! tongban (通办): a TLS gateway through which government departments query
//! each other's resident records under sharing policies.
//!
//! The request path, in order: [`server`] (TLS, client certificates) →
//! [`pipeline::authn`] (JWT) → [`pipeline::rate_limit`] → [`policy`] (decide)
//! → [`provider`] (fetch) → [`pipeline::minimize`] → [`audit`] (durable before
//! the answer) → [`api`] (JSON or problem+json). See `ARCHITECTURE.md`.
#![forbid(unsafe_code)]

pub mod alerts;
pub mod api;
pub mod audit;
pub mod backup;
pub mod calendar;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod data_objections;
pub mod datadir;
pub mod dev;
pub mod domain;
pub mod error;
pub mod faults;
pub mod gateway;
pub mod kept;
pub mod keys;
pub mod logsink;
pub mod metrics;
pub mod objections;
pub mod pipeline;
pub mod policy;
pub mod problem;
pub mod proof;
pub mod provider;
pub mod server;
pub mod sharing;
pub mod stops;
pub mod tls_client;
