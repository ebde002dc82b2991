//! The compiled policy: an index from (consumer, dataset) to the few grants
//! that can apply. The decision over it is in [`super::decide`].

use std::collections::HashMap;
use std::sync::Arc;

use super::load::{Dataset, Grant, PolicySet};
use super::model::{AccessSpec, Mask};
use crate::clock::Clock;
use crate::domain::{DatasetId, DeptId, FieldName, GrantId};
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
    /// The set's version, shared with the events that name it.
    version: crate::audit::event::Text,
}

#[derive(Debug, Clone)]
pub(super) struct Candidate {
    pub(super) grant: Arc<CompiledGrant>,
    pub(super) access: usize,
    /// Every field this access lets a lookup or batch have, in catalog order.
    pub(super) lookup: Arc<[Disclosed]>,
    /// Every field it lets a verification check (verify-only ones too).
    pub(super) verify: Arc<[Disclosed]>,
}

/// One field that may leave, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclosed {
    /// The field.
    pub name: FieldName,
    /// The mask to apply, if any.
    pub mask: Option<Mask>,
    /// The field's member name in JSON, with its colon (`"name":`),
    /// rendered once.
    pub key: Arc<str>,
}

impl Disclosed {
    /// `name`, masked by `mask` if one is given.
    pub fn new(name: FieldName, mask: Option<Mask>) -> Self {
        let quoted = serde_json::to_string(name.as_str()).unwrap_or_default();
        Self {
            key: format!("{quoted}:").into(),
            name,
            mask,
        }
    }
}

/// Whether `access` lets `field` out, and with which mask: `Some(None)` in
/// clear, `Some(Some(mask))` masked, `None` not at all. Verification
/// discloses nothing, so a verify-only field counts when `verifying`.
pub(super) fn disclosable(
    access: &AccessSpec,
    field: &FieldName,
    verifying: bool,
) -> Option<Option<Mask>> {
    if access.fields.contains(field) || (verifying && access.verify_only.contains(field)) {
        Some(None)
    } else {
        access.masked.get(field).map(|m| Some(*m))
    }
}

/// Every field of `dataset` that `access` lets out, in catalog order: what
/// a query that names no fields is given (compiled once per grant).
pub(super) fn disclosures(
    dataset: &Dataset,
    access: &AccessSpec,
    verifying: bool,
) -> Arc<[Disclosed]> {
    dataset
        .spec
        .fields
        .iter()
        .filter_map(|f| {
            disclosable(access, &f.name, verifying).map(|mask| Disclosed::new(f.name.clone(), mask))
        })
        .collect()
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
                let (lookup, verify) = match set.datasets.get(&a.dataset) {
                    Some(d) => (disclosures(d, a, false), disclosures(d, a, true)),
                    None => (Arc::from([]), Arc::from([])),
                };
                by_consumer
                    .entry(grant.spec.consumer.clone())
                    .or_default()
                    .entry(a.dataset.clone())
                    .or_default()
                    .push(Candidate {
                        grant: compiled.clone(),
                        access,
                        lookup,
                        verify,
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
            version: set.version.as_str().into(),
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

    /// The policy version in force, shared (for an event).
    pub fn version_text(&self) -> crate::audit::event::Text {
        self.version.clone()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{PolicySources, validate};

    fn set(quota: &str) -> PolicySet {
        let mut sources = PolicySources::default();
        for (file, text) in [
            (
                "departments.toml",
                include_str!("../../policies/departments.toml"),
            ),
            (
                "datasets/gongan.hukou.toml",
                include_str!("../../policies/datasets/gongan.hukou.toml"),
            ),
        ] {
            sources.files.insert(file.into(), text.into());
        }
        sources.files.insert(
            "grants/test.toml".into(),
            format!(
                "[[grant]]\nid = \"g\"\nconsumer = \"minzheng\"\nroles = [\"r\"]\npurposes = [\"p\"]\noperations = [\"lookup\"]\nbasis = \"b\"\n[grant.conditions]\ncase_ref_exempt_reason = \"t\"\nquota = \"{quota}\"\n[[grant.access]]\ndataset = \"gongan.hukou\"\nfields = [\"name\"]\n"
            ),
        );
        validate(sources).unwrap()
    }

    /// A reload keeps what a limiter has counted when its rate is unchanged
    /// (else every reload would hand out a fresh quota), and starts a new
    /// one when the rate changed.
    #[test]
    fn a_recompiled_policy_keeps_the_limiters_whose_rate_is_unchanged() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let rate = |d: &DeptId| -> RateSpec {
            if d.as_str() == "minzheng" {
                "5/min".parse().unwrap()
            } else {
                "9/min".parse().unwrap()
            }
        };
        let first = CompiledPolicy::compile(set("3/min"), rate, None, &clock);
        assert_eq!(first.version(), first.set.version);
        assert!(!first.version().is_empty());
        // A token's department must be registered.
        assert!(first.knows_department("minzheng"));
        assert!(!first.knows_department("nosuch"));
        let id = GrantId::parse("g").unwrap();
        let minzheng = DeptId::parse("minzheng").unwrap();
        let same = CompiledPolicy::compile(set("3/min"), rate, Some(&first), &clock);
        let grant_limit = |p: &CompiledPolicy| p.grants[&id].limit.clone().unwrap();
        assert!(Arc::ptr_eq(&grant_limit(&first), &grant_limit(&same)));
        assert!(Arc::ptr_eq(
            &first.dept_limits[&minzheng],
            &same.dept_limits[&minzheng]
        ));
        let other_rate = |_: &DeptId| -> RateSpec { "7/min".parse().unwrap() };
        let changed = CompiledPolicy::compile(set("4/min"), other_rate, Some(&first), &clock);
        assert!(!Arc::ptr_eq(&grant_limit(&first), &grant_limit(&changed)));
        assert_eq!(grant_limit(&changed).spec, "4/min".parse().unwrap());
        assert!(!Arc::ptr_eq(
            &first.dept_limits[&minzheng],
            &changed.dept_limits[&minzheng]
        ));
        assert_eq!(
            changed.dept_limits[&minzheng].spec,
            "7/min".parse().unwrap()
        );
    }
}
