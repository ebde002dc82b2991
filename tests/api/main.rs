//! Integration tests: the real server, real TLS, a real HTTPS client.
//! One test binary (one link step on a 2-core machine).
#![allow(unreachable_pub)]

mod audit_log;
mod auth;
mod crash;
mod helpers;
mod lookup;
mod tls;
