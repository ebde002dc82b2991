//! The stages of the query path that are not policy or audit: authentication,
//! rate limiting and minimization. Decisions live in [`crate::policy`], audit
//! in [`crate::audit`]; [`crate::api::query`] runs them in order.

pub mod authn;
pub mod minimize;
pub mod rate_limit;
pub mod unauthenticated;
pub mod verify;
