//! The request path's stages that are not policy or audit: admission in
//! order ([`admit`]: authentication, the stops, rate limits, the decision,
//! quotas), minimization and verification. Decisions live in
//! [`crate::policy`], audit in [`crate::audit`]; the handlers in
//! [`crate::api`] call [`admit`] and answer.

pub mod admit;
pub mod authn;
pub mod connection;
pub mod idempotency;
pub mod jwks;
pub mod minimize;
pub mod rate_limit;
pub mod resident;
pub mod unauthenticated;
pub mod verify;
