//! The compiled policy: an index from (consumer, dataset) to the few grants
//! that can apply. The decision over it is in [`super::decide`].

use std::collections::HashMap;
use std::sync::Arc;

use super::load::{Grant, PolicySet};
use crate::clock::Clock;
use crate::domain::{DatasetId, DeptId, GrantId};
use crate::pipeline::rate_limit::{RateLimit, RateSpec};

/// A grant ready to decide with: the validated grant and its quota limiter.
#[derive(Debug)]
pub struct CompiledGrant {
    /// The grant.
    pub grant: Grant,
    /// Its grant-wide quota, shared by every request it allows.
    pub limit: Option<Arc<RateLimit>>,
}

impl CompiledGrant {
    /// The grant id.
    pub fn id(&self) -> &GrantId {
        &self.grant.spec.id
    }

    /// The grant version.
    pub fn version(&self) -> u32 {
        self.grant.spec.version
    }
}

/// A policy set compiled for decisions. Swapped whole on reload, never edited.
#[derive(Debug)]
pub struct CompiledPolicy {
    /// The validated set it was compiled from.
    pub set: PolicySet,
    pub(super) by_consumer: HashMap<DeptId, HashMap<DatasetId, Vec<Candidate>>>,
    grants: HashMap<GrantId, Arc<CompiledGrant>>,
    dept_limits: HashMap<DeptId, Arc<RateLimit>>,
}

#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) grant: Arc<CompiledGrant>,
    pub(super) access: usize,
}

impl CompiledPolicy {
    /// Compiles a validated set. Limiters of `previous` whose rate is unchanged
    /// are kept, so a reload does not hand out a fresh burst.
    pub fn compile(
        set: PolicySet,
        dept_rate: impl Fn(&DeptId) -> RateSpec,
        previous: Option<&CompiledPolicy>,
        clock: &Clock,
    ) -> Self {
        let mut grants = HashMap::new();
        let mut by_consumer: HashMap<DeptId, HashMap<DatasetId, Vec<Candidate>>> = HashMap::new();
        for grant in set.grants.values() {
            let limit = grant.quota.map(|spec| {
                previous
                    .and_then(|p| p.grants.get(&grant.spec.id))
                    .and_then(|g| g.limit.clone())
                    .filter(|l| l.spec == spec)
                    .unwrap_or_else(|| Arc::new(RateLimit::new(spec, clock)))
            });
            let compiled = Arc::new(CompiledGrant {
                grant: grant.clone(),
                limit,
            });
            for (access, a) in grant.spec.access.iter().enumerate() {
                by_consumer
                    .entry(grant.spec.consumer.clone())
                    .or_default()
                    .entry(a.dataset.clone())
                    .or_default()
                    .push(Candidate {
                        grant: compiled.clone(),
                        access,
                    });
            }
            grants.insert(grant.spec.id.clone(), compiled);
        }
        let dept_limits = set
            .departments
            .keys()
            .map(|dept| {
                let spec = dept_rate(dept);
                let limit = previous
                    .and_then(|p| p.dept_limits.get(dept))
                    .filter(|l| l.spec == spec)
                    .cloned()
                    .unwrap_or_else(|| Arc::new(RateLimit::new(spec, clock)));
                (dept.clone(), limit)
            })
            .collect();
        Self {
            set,
            by_consumer,
            grants,
            dept_limits,
        }
    }

    /// The policy version in force.
    pub fn version(&self) -> &str {
        &self.set.version
    }

    /// Whether the department is registered.
    pub fn knows_department(&self, dept: &str) -> bool {
        self.set.departments.contains_key(dept)
    }

    /// The department's rate limiter.
    pub fn department_limit(&self, dept: &DeptId) -> Option<&RateLimit> {
        self.dept_limits.get(dept).map(AsRef::as_ref)
    }

    /// The grants a department holds, for the catalog view.
    pub fn grants_of(&self, dept: &DeptId) -> impl Iterator<Item = &Arc<CompiledGrant>> {
        self.grants
            .values()
            .filter(move |g| g.grant.spec.consumer == *dept)
    }
}
