//! Subcommands of the `tongban` binary that need more than a few lines.

pub(crate) mod admin;
pub(crate) mod audit;
pub(crate) mod policy;
