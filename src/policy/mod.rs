//! Sharing policies: the catalog, the grants, loading with located errors, the
//! compiled index and the live, atomically swapped policy in force.

pub mod decide;
pub mod diff;
pub mod edit;
pub mod history;
pub mod index;
pub mod load;
pub mod model;
pub mod predicate;

use std::sync::Arc;

use arc_swap::ArcSwap;

pub use decide::{Decision, DecisionRequest, DenyReason, Disclosed};
pub use index::CompiledPolicy;
pub use load::{PolicyError, PolicySet, PolicySources};

/// The policy in force. Readers take a snapshot per request; a reload swaps
/// in a whole new compiled set in one step, so no request sees half a change.
#[derive(Debug)]
pub struct LivePolicy {
    current: ArcSwap<CompiledPolicy>,
}

impl LivePolicy {
    /// Starts with `policy` in force.
    pub fn new(policy: CompiledPolicy) -> Self {
        Self {
            current: ArcSwap::from_pointee(policy),
        }
    }

    /// A consistent snapshot for one request.
    pub fn snapshot(&self) -> Arc<CompiledPolicy> {
        self.current.load_full()
    }

    /// Puts a new compiled set in force.
    pub fn swap(&self, policy: CompiledPolicy) {
        self.current.store(Arc::new(policy));
    }
}
