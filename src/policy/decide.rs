//! The decision: which grant allows a query, and which fields it gives.
//!
//! Deny by default: a query is allowed only when one grant matches on every
//! point (purpose, role, operation, validity, fields, case reference). Pure:
//! no I/O, no clock reads beyond the request's date.

use std::sync::Arc;

use time::Date;

pub use super::index::Disclosed;
use super::index::{Candidate, CompiledGrant, CompiledPolicy, disclosable};
use super::load::Grant;
use super::model::{Operation, SharingClass};
use crate::domain::{CaseRef, DatasetId, DeptId, FieldName, GrantId, Purpose, Role};

type CandidateFilter<'a> = dyn Fn(&Candidate) -> bool + 'a;

/// What is being asked, by whom.
#[derive(Debug, Clone)]
pub struct DecisionRequest<'a> {
    /// The caller's department.
    pub consumer: &'a DeptId,
    /// The caller's roles.
    pub roles: &'a [Role],
    /// The dataset asked for.
    pub dataset: &'a DatasetId,
    /// The operation.
    pub operation: Operation,
    /// The stated purpose.
    pub purpose: &'a Purpose,
    /// The stated case reference, if any.
    pub case_ref: Option<&'a CaseRef>,
    /// The fields asked for; `None` means every field the grant discloses.
    pub requested: Option<&'a [FieldName]>,
    /// Today, in the gateway's time zone, for validity windows.
    pub today: Date,
}

/// The outcome of a decision.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Allowed by one grant, for these fields.
    Allow(Allowance),
    /// Denied, with the reason.
    Deny(Denial),
}

/// What an allowing grant lets out.
#[derive(Debug, Clone)]
pub struct Allowance {
    /// The grant that allowed it.
    pub grant: Arc<CompiledGrant>,
    /// The fields to disclose, in catalog order, each with its mask.
    pub fields: Arc<[Disclosed]>,
}

/// Why a query was denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenyReason {
    /// The dataset is not in the catalog.
    UnknownDataset,
    /// The dataset is of class `none`.
    DatasetNotShared,
    /// A requested field is not in the dataset.
    UnknownField,
    /// No grant gives the department this dataset.
    NoGrant,
    /// Grants exist, but not for this purpose.
    PurposeNotGranted,
    /// Grants exist for the purpose, but not for the caller's roles.
    RoleNotGranted,
    /// The operation is not granted.
    OperationNotGranted,
    /// The grant is not in force today.
    GrantNotInForce,
    /// A requested field is verify-only.
    FieldVerifyOnly,
    /// A requested field is not granted.
    FieldNotGranted,
    /// The grant names no field this operation may disclose.
    NoFieldsGranted,
    /// A masked field cannot be verified: its raw value is what the mask hides.
    FieldMaskedNotVerifiable,
    /// The grant needs a case reference and none was given.
    CaseRefRequired,
    /// The case reference does not have the form the grant requires.
    CaseRefFormat,
}

/// A denial and a message that tells the caller what to fix.
#[derive(Debug, Clone)]
pub struct Denial {
    /// The reason.
    pub reason: DenyReason,
    /// What the caller is told; never holds resident data.
    pub detail: DenyDetail,
    /// The grant that came nearest, where one did.
    pub nearest: Option<GrantId>,
}

/// What a denial tells the caller, as parameters (the sentences, in English
/// and Chinese, are in [`crate::problem`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyDetail {
    /// The dataset is not in the catalog.
    UnknownDataset {
        /// The dataset asked for.
        dataset: String,
    },
    /// The dataset's class is `none`.
    NotShared {
        /// The dataset.
        dataset: String,
    },
    /// A requested field is not in the dataset.
    UnknownField {
        /// The field.
        field: String,
        /// The dataset.
        dataset: String,
    },
    /// No grant of the consumer names the dataset.
    NoGrant {
        /// The consumer.
        consumer: String,
        /// The dataset.
        dataset: String,
    },
    /// No candidate was left (not reached: a field denial is always set).
    NoGrantApplies,
    /// No grant for this purpose.
    PurposeNotGranted {
        /// The purpose.
        purpose: String,
        /// The consumer.
        consumer: String,
        /// The dataset.
        dataset: String,
    },
    /// No grant for these roles.
    RoleNotGranted {
        /// The dataset.
        dataset: String,
        /// The purpose.
        purpose: String,
    },
    /// No grant for this operation.
    OperationNotGranted {
        /// The operation.
        operation: Operation,
        /// The dataset.
        dataset: String,
        /// The purpose.
        purpose: String,
    },
    /// The nearest grant is not in force yet.
    NotYetInForce {
        /// The grant.
        grant: String,
        /// Its first day.
        from: String,
    },
    /// The nearest grant has expired.
    Expired {
        /// The grant.
        grant: String,
        /// Its last day.
        until: String,
    },
    /// No grant is in force.
    NoneInForce,
    /// The grant requires a case reference.
    CaseRefRequired {
        /// The grant.
        grant: String,
    },
    /// The case reference does not match the grant's pattern.
    CaseRefFormat {
        /// The grant.
        grant: String,
        /// The pattern.
        pattern: String,
    },
    /// A field that may only be verified.
    FieldVerifyOnly {
        /// The field.
        field: String,
    },
    /// A masked field asked in a verify.
    FieldMasked {
        /// The field.
        field: String,
    },
    /// A field not granted.
    FieldNotGranted {
        /// The field.
        field: String,
        /// The dataset.
        dataset: String,
        /// The purpose.
        purpose: String,
    },
    /// The grant discloses no field by this operation.
    NoFieldsGranted {
        /// The grant.
        grant: String,
        /// The dataset.
        dataset: String,
        /// The operation.
        operation: Operation,
    },
}

impl CompiledPolicy {
    /// Decides a query. Pure: no I/O, no clock reads beyond `req.today`.
    ///
    /// In three steps: the dataset and the consumer's grants for it, the
    /// grants narrowed by purpose, role, operation and validity, then the
    /// first grant that gives the fields asked (and whose case-reference
    /// rule the request meets). Each step's refusal names the grant nearest
    /// to allowing it.
    pub fn decide(&self, req: &DecisionRequest<'_>) -> Decision {
        let all = match self.grants_for(req) {
            Ok(all) => all,
            Err(denial) => return Decision::Deny(denial),
        };
        match narrow(all, req) {
            Ok(candidates) => pick(&candidates, req),
            Err(denial) => Decision::Deny(denial),
        }
    }

    /// The consumer's grants for the dataset, once the dataset is known,
    /// shared, and has every field asked.
    fn grants_for(&self, req: &DecisionRequest<'_>) -> Result<&[Candidate], Denial> {
        let Some(dataset) = self.set.datasets.get(req.dataset) else {
            return Err(deny(
                DenyReason::UnknownDataset,
                DenyDetail::UnknownDataset {
                    dataset: req.dataset.to_string(),
                },
                None,
            ));
        };
        if dataset.spec.class == SharingClass::None {
            return Err(deny(
                DenyReason::DatasetNotShared,
                DenyDetail::NotShared {
                    dataset: req.dataset.to_string(),
                },
                None,
            ));
        }
        if let Some(unknown) = req
            .requested
            .into_iter()
            .flatten()
            .find(|f| !dataset.fields.contains_key(*f))
        {
            return Err(deny(
                DenyReason::UnknownField,
                DenyDetail::UnknownField {
                    field: unknown.to_string(),
                    dataset: req.dataset.to_string(),
                },
                None,
            ));
        }
        let Some(all) = self
            .by_consumer
            .get(req.consumer.as_str())
            .and_then(|m| m.get(req.dataset.as_str()))
        else {
            return Err(deny(
                DenyReason::NoGrant,
                DenyDetail::NoGrant {
                    consumer: req.consumer.to_string(),
                    dataset: req.dataset.to_string(),
                },
                None,
            ));
        };
        Ok(all)
    }
}

/// A denial, naming the grant nearest to allowing the request.
fn deny(reason: DenyReason, detail: DenyDetail, nearest: Option<&Candidate>) -> Denial {
    Denial {
        reason,
        detail,
        nearest: nearest.map(|c| c.grant.id().clone()),
    }
}

/// The grants whose purposes, roles, operations and validity admit the
/// request, in order; the first of these tests that leaves none refuses.
fn narrow<'c>(
    all: &'c [Candidate],
    req: &DecisionRequest<'_>,
) -> Result<Vec<&'c Candidate>, Denial> {
    let stages: [(DenyReason, &CandidateFilter<'_>); 4] = [
        (DenyReason::PurposeNotGranted, &|c| {
            c.grant.grant.spec.purposes.contains(req.purpose)
        }),
        (DenyReason::RoleNotGranted, &|c| {
            c.grant
                .grant
                .spec
                .roles
                .iter()
                .any(|r| req.roles.contains(r))
        }),
        (DenyReason::OperationNotGranted, &|c| {
            c.grant.grant.spec.operations.contains(&req.operation)
        }),
        (DenyReason::GrantNotInForce, &|c| {
            in_force(&c.grant.grant, req.today)
        }),
    ];
    let mut candidates: Vec<&Candidate> = all.iter().collect();
    for (reason, keep) in stages {
        let nearest = candidates.first().copied();
        candidates.retain(|c| keep(c));
        if candidates.is_empty() {
            let detail = match reason {
                DenyReason::PurposeNotGranted => DenyDetail::PurposeNotGranted {
                    purpose: req.purpose.to_string(),
                    consumer: req.consumer.to_string(),
                    dataset: req.dataset.to_string(),
                },
                DenyReason::RoleNotGranted => DenyDetail::RoleNotGranted {
                    dataset: req.dataset.to_string(),
                    purpose: req.purpose.to_string(),
                },
                DenyReason::OperationNotGranted => DenyDetail::OperationNotGranted {
                    operation: req.operation,
                    dataset: req.dataset.to_string(),
                    purpose: req.purpose.to_string(),
                },
                _ => not_in_force_detail(nearest.map(|c| &c.grant.grant), req.today),
            };
            return Err(deny(reason, detail, nearest));
        }
    }
    Ok(candidates)
}

/// The first candidate that gives the fields asked, if its case-reference
/// rule is met; otherwise the refusal of the first candidate that fell
/// through on its fields.
fn pick(candidates: &[&Candidate], req: &DecisionRequest<'_>) -> Decision {
    let mut field_denial = None;
    for c in candidates {
        let access = &c.grant.grant.spec.access[c.access];
        let verifying = req.operation == Operation::Verify;
        let every = if verifying { &c.verify } else { &c.lookup };
        let fields: Arc<[Disclosed]> = match req.requested {
            Some(requested)
                if verifying && requested.iter().any(|f| access.masked.contains_key(f)) =>
            {
                let masked = requested.iter().find(|f| access.masked.contains_key(*f));
                field_denial.get_or_insert((
                    DenyReason::FieldMaskedNotVerifiable,
                    masked.cloned(),
                    *c,
                ));
                continue;
            }
            Some(requested) => {
                if let Some(missing) = requested
                    .iter()
                    .find(|f| disclosable(access, f, verifying).is_none())
                {
                    let reason = if access.verify_only.contains(missing) {
                        DenyReason::FieldVerifyOnly
                    } else {
                        DenyReason::FieldNotGranted
                    };
                    field_denial.get_or_insert((reason, Some(missing.clone()), *c));
                    continue;
                }
                every
                    .iter()
                    .filter(|d| requested.contains(&d.name))
                    .cloned()
                    .collect()
            }
            None => every.clone(),
        };
        if fields.is_empty() && req.operation != Operation::Verify {
            field_denial.get_or_insert((DenyReason::NoFieldsGranted, None, *c));
            continue;
        }
        if c.grant.grant.spec.conditions.case_ref_required && req.case_ref.is_none() {
            return Decision::Deny(deny(
                DenyReason::CaseRefRequired,
                DenyDetail::CaseRefRequired {
                    grant: c.grant.id().to_string(),
                },
                Some(c),
            ));
        }
        if let (Some(re), Some(case)) = (&c.grant.grant.case_ref_pattern, req.case_ref) {
            if !re.is_match(case.as_str()) {
                return Decision::Deny(deny(
                    DenyReason::CaseRefFormat,
                    DenyDetail::CaseRefFormat {
                        grant: c.grant.id().to_string(),
                        pattern: c
                            .grant
                            .grant
                            .spec
                            .conditions
                            .case_ref_pattern
                            .clone()
                            .unwrap_or_default(),
                    },
                    Some(c),
                ));
            }
        }
        return Decision::Allow(Allowance {
            grant: c.grant.clone(),
            fields,
        });
    }
    // Every candidate fell through on its fields: `field_denial` is set,
    // since `candidates` is not empty here.
    let Some((reason, field, nearest)) = field_denial else {
        return Decision::Deny(deny(DenyReason::NoGrant, DenyDetail::NoGrantApplies, None));
    };
    let detail = match (reason, field) {
        (DenyReason::FieldVerifyOnly, Some(f)) => DenyDetail::FieldVerifyOnly {
            field: f.to_string(),
        },
        (DenyReason::FieldMaskedNotVerifiable, Some(f)) => DenyDetail::FieldMasked {
            field: f.to_string(),
        },
        (DenyReason::FieldNotGranted, Some(f)) => DenyDetail::FieldNotGranted {
            field: f.to_string(),
            dataset: req.dataset.to_string(),
            purpose: req.purpose.to_string(),
        },
        _ => DenyDetail::NoFieldsGranted {
            grant: nearest.grant.id().to_string(),
            dataset: req.dataset.to_string(),
            operation: req.operation,
        },
    };
    Decision::Deny(deny(reason, detail, Some(nearest)))
}

fn in_force(grant: &Grant, today: Date) -> bool {
    grant.in_force(today)
}

fn not_in_force_detail(grant: Option<&Grant>, today: Date) -> DenyDetail {
    match grant {
        Some(g) => match (g.valid_from, g.valid_until) {
            (Some(from), _) if today < from => DenyDetail::NotYetInForce {
                grant: g.spec.id.to_string(),
                from: from.to_string(),
            },
            (_, Some(until)) => DenyDetail::Expired {
                grant: g.spec.id.to_string(),
                until: until.to_string(),
            },
            // Not reached: a grant out of force has a bound it is outside.
            _ => DenyDetail::NoneInForce,
        },
        None => DenyDetail::NoneInForce,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::pipeline::minimize::{Record, minimize};
    use crate::policy::load::{PolicySources, validate};
    use crate::policy::model::{FieldType, Mask};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    const HUKOU: &str = include_str!("../../policies/datasets/gongan.hukou.toml");
    const DEPARTMENTS: &str = include_str!("../../policies/departments.toml");
    const FIELDS: [(&str, FieldType); 10] = [
        ("id_number", FieldType::String),
        ("name", FieldType::String),
        ("gender", FieldType::String),
        ("ethnicity", FieldType::String),
        ("birth_date", FieldType::Date),
        ("hukou_address", FieldType::String),
        ("household_id", FieldType::String),
        ("relation_to_head", FieldType::String),
        ("hukou_status", FieldType::String),
        ("phone", FieldType::String),
    ];
    const MASKS: [Mask; 6] = [
        Mask::IdNumber,
        Mask::Mobile,
        Mask::Name,
        Mask::Address,
        Mask::Year,
        Mask::Redact,
    ];

    fn policy(grant_toml: &str) -> Option<CompiledPolicy> {
        let mut sources = PolicySources::default();
        sources
            .files
            .insert("departments.toml".into(), DEPARTMENTS.into());
        sources
            .files
            .insert("datasets/gongan.hukou.toml".into(), HUKOU.into());
        sources
            .files
            .insert("grants/test.toml".into(), grant_toml.into());
        let set = validate(sources).ok()?;
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        Some(CompiledPolicy::compile(
            set,
            |_| "10/s".parse().unwrap(),
            None,
            &clock,
        ))
    }

    fn ask(
        policy: &CompiledPolicy,
        operation: Operation,
        requested: Option<&[&str]>,
        today: Date,
    ) -> Decision {
        let requested: Option<Vec<FieldName>> =
            requested.map(|r| r.iter().map(|f| FieldName::parse(f).unwrap()).collect());
        policy.decide(&DecisionRequest {
            consumer: &DeptId::parse("minzheng").unwrap(),
            roles: &[Role::parse("r").unwrap()],
            dataset: &DatasetId::parse("gongan.hukou").unwrap(),
            operation,
            purpose: &Purpose::parse("p").unwrap(),
            case_ref: None,
            requested: requested.as_deref(),
            today,
        })
    }

    fn denied(d: Decision) -> Denial {
        match d {
            Decision::Deny(d) => d,
            Decision::Allow(a) => panic!("allowed: {:?}", a.fields),
        }
    }

    /// Each refusal on fields or validity names what it refuses, so the
    /// caller can tell which field to drop or which date to wait for.
    #[test]
    fn refusals_on_fields_and_validity_name_what_they_refuse() {
        let grant = |extra: &str| {
            format!(
                "[[grant]]\nid = \"g\"\nconsumer = \"minzheng\"\nroles = [\"r\"]\npurposes = [\"p\"]\noperations = [\"lookup\", \"verify\"]\nbasis = \"b\"\n[grant.conditions]\ncase_ref_exempt_reason = \"t\"\n{extra}\n[[grant.access]]\ndataset = \"gongan.hukou\"\nfields = [\"name\"]\nmasked = {{ phone = \"mobile\" }}\nverify_only = [\"birth_date\"]\nverify_predicates = [{{ field = \"birth_date\", op = \"exists\" }}]\n"
            )
        };
        let today = time::macros::date!(2026 - 06 - 01);
        let p = policy(&grant("")).unwrap();
        let d = denied(ask(&p, Operation::Lookup, Some(&["birth_date"]), today));
        assert_eq!(d.reason, DenyReason::FieldVerifyOnly);
        assert_eq!(
            d.detail,
            DenyDetail::FieldVerifyOnly {
                field: "birth_date".into()
            }
        );
        let d = denied(ask(&p, Operation::Verify, Some(&["phone"]), today));
        assert_eq!(d.reason, DenyReason::FieldMaskedNotVerifiable);
        assert_eq!(
            d.detail,
            DenyDetail::FieldMasked {
                field: "phone".into()
            }
        );
        let d = denied(ask(&p, Operation::Lookup, Some(&["gender"]), today));
        assert_eq!(d.reason, DenyReason::FieldNotGranted);
        assert_eq!(
            d.detail,
            DenyDetail::FieldNotGranted {
                field: "gender".into(),
                dataset: "gongan.hukou".into(),
                purpose: "p".into(),
            }
        );

        // A grant that only verifies discloses nothing to a lookup.
        let only_verify = grant("").replace(
            "fields = [\"name\"]\nmasked = { phone = \"mobile\" }\n",
            "fields = []\n",
        );
        let p = policy(&only_verify).unwrap();
        let d = denied(ask(&p, Operation::Lookup, None, today));
        assert_eq!(d.reason, DenyReason::NoFieldsGranted);
        assert_eq!(
            d.detail,
            DenyDetail::NoFieldsGranted {
                grant: "g".into(),
                dataset: "gongan.hukou".into(),
                operation: Operation::Lookup,
            }
        );
        assert!(matches!(
            ask(&p, Operation::Verify, Some(&["birth_date"]), today),
            Decision::Allow(_)
        ));

        let window = grant("valid_from = \"2026-07-01\"\nvalid_until = \"2026-12-31\"\n");
        let p = policy(&window).unwrap();
        let d = denied(ask(&p, Operation::Lookup, None, today));
        assert_eq!(d.reason, DenyReason::GrantNotInForce);
        assert_eq!(
            d.detail,
            DenyDetail::NotYetInForce {
                grant: "g".into(),
                from: "2026-07-01".into()
            }
        );
        assert!(matches!(
            ask(
                &p,
                Operation::Lookup,
                None,
                time::macros::date!(2026 - 07 - 01)
            ),
            Decision::Allow(_)
        ));
        let d = denied(ask(
            &p,
            Operation::Lookup,
            None,
            time::macros::date!(2027 - 01 - 01),
        ));
        assert_eq!(
            d.detail,
            DenyDetail::Expired {
                grant: "g".into(),
                until: "2026-12-31".into()
            }
        );
    }

    proptest! {
        /// For any grant and any record, a lookup answer holds only fields the
        /// grant discloses, masked fields never in clear, and only what was asked.
        #[test]
        fn answers_never_hold_a_field_the_grant_does_not_allow(
            disposition in proptest::collection::vec((0u8..4, 0usize..6), FIELDS.len()),
            values in proptest::collection::vec("[a-z0-9]{6,14}", FIELDS.len()),
            extra in proptest::collection::btree_map("[a-z_]{1,10}", "[a-z0-9]{1,10}", 0..5),
            ask in proptest::option::of(proptest::collection::vec(0usize..FIELDS.len(), 1..4)),
        ) {
            let mut plain = Vec::new();
            let mut masked = Vec::new();
            let mut verify = Vec::new();
            for ((d, m), (name, kind)) in disposition.iter().zip(FIELDS) {
                match d {
                    1 => plain.push(name),
                    2 if MASKS[*m].applies_to(kind) => masked.push((name, MASKS[*m])),
                    3 => verify.push(name),
                    _ => {}
                }
            }
            let masked_toml: Vec<String> = masked
                .iter()
                .map(|(f, m)| format!("{f} = \"{}\"", serde_json::to_value(m).unwrap().as_str().unwrap()))
                .collect();
            let grant = format!(
                "[[grant]]\nid = \"g\"\nconsumer = \"minzheng\"\nroles = [\"r\"]\npurposes = [\"p\"]\noperations = [\"lookup\", \"verify\"]\nbasis = \"b\"\n\n[grant.conditions]\ncase_ref_exempt_reason = \"t\"\n\n[[grant.access]]\ndataset = \"gongan.hukou\"\nfields = {:?}\nmasked = {{ {} }}\nverify_only = {:?}\nverify_predicates = [{}]\n",
                plain, masked_toml.join(", "), verify,
                verify.iter().map(|f| format!("{{ field = \"{f}\", op = \"exists\" }}")).collect::<Vec<_>>().join(", "),
            );
            let Some(policy) = policy(&grant) else {
                prop_assume!(false);
                unreachable!();
            };
            let mut record = Record::new();
            for ((name, kind), v) in FIELDS.iter().zip(&values) {
                let v = if *kind == FieldType::Date { json!("1990-01-31") } else { json!(v) };
                record.insert((*name).to_owned(), v);
            }
            for (k, v) in &extra {
                record.insert(k.clone(), json!(v));
            }
            let requested: Option<Vec<FieldName>> = ask.map(|ix| ix.iter().map(|i| FieldName::parse(FIELDS[*i].0).unwrap()).collect());
            let dept = DeptId::parse("minzheng").unwrap();
            let roles = [Role::parse("r").unwrap()];
            let dataset = DatasetId::parse("gongan.hukou").unwrap();
            let purpose = Purpose::parse("p").unwrap();
            let decision = policy.decide(&DecisionRequest {
                consumer: &dept, roles: &roles, dataset: &dataset, operation: Operation::Lookup,
                purpose: &purpose, case_ref: None, requested: requested.as_deref(),
                today: time::macros::date!(2026 - 01 - 01),
            });
            if let Decision::Allow(allowance) = decision {
                let out = minimize(record.clone(), &allowance.fields);
                for (k, v) in &out {
                    let is_plain = plain.contains(&k.as_str());
                    let is_masked = masked.iter().any(|(f, _)| f == k);
                    prop_assert!(is_plain || is_masked, "field {} left without a grant", k);
                    if is_masked {
                        prop_assert!(v != &record[k], "masked field {} left in clear", k);
                    }
                    if let Some(req) = &requested {
                        prop_assert!(req.iter().any(|f| f.as_str() == k), "field {} was not asked for", k);
                    }
                    prop_assert!(v != &Value::Null);
                }
            }
        }

        /// For a grant with any purposes, roles, operations and case-reference
        /// rule, and a request with any purpose, roles, operation and case
        /// reference, the decision is the reference model's: allowed exactly
        /// when every condition holds, else refused for the first that fails,
        /// in the documented order.
        #[test]
        fn decisions_follow_the_reference_model(
            grant_purposes in proptest::sample::subsequence(vec!["p1", "p2", "p3"], 1..=3),
            grant_roles in proptest::sample::subsequence(vec!["r1", "r2", "r3"], 1..=3),
            grant_ops in proptest::sample::subsequence(vec!["lookup", "verify", "batch"], 1..=3),
            case_rule in 0u8..3,
            purpose in proptest::sample::select(vec!["p1", "p2", "p3"]),
            roles in proptest::sample::subsequence(vec!["r1", "r2", "r3", "r4"], 0..=3),
            op in proptest::sample::select(vec![Operation::Lookup, Operation::Verify, Operation::Batch]),
            case in proptest::option::of(proptest::sample::select(vec!["MZ-2026-1", "XX-1", "MZ-"])),
        ) {
            let pattern = r"MZ-\d{4}-\d+";
            let conditions = format!(
                "[grant.conditions]\nbatch_limit = 10\n{}\n",
                match case_rule {
                    0 => "case_ref_exempt_reason = \"a rule without cases\"\n".to_owned(),
                    1 => "case_ref_required = true\n".to_owned(),
                    _ => format!("case_ref_required = true\ncase_ref_pattern = '{pattern}'\n"),
                }
            );
            let grant = format!(
                "[[grant]]\nid = \"g\"\nconsumer = \"minzheng\"\nroles = {grant_roles:?}\npurposes = {grant_purposes:?}\noperations = {grant_ops:?}\nbasis = \"b\"\n\n{conditions}[[grant.access]]\ndataset = \"gongan.hukou\"\nfields = [\"name\"]\n",
            );
            let policy = policy(&grant).expect("a valid grant");
            let dept = DeptId::parse("minzheng").unwrap();
            let roles: Vec<Role> = roles.iter().map(|r| Role::parse(r).unwrap()).collect();
            let dataset = DatasetId::parse("gongan.hukou").unwrap();
            let purpose_id = Purpose::parse(purpose).unwrap();
            let case_ref = case.map(|c| CaseRef::parse(c).unwrap());
            let decision = policy.decide(&DecisionRequest {
                consumer: &dept, roles: &roles, dataset: &dataset, operation: op,
                purpose: &purpose_id, case_ref: case_ref.as_ref(), requested: None,
                today: time::macros::date!(2026 - 01 - 01),
            });

            let expected = if !grant_purposes.contains(&purpose) {
                Some(DenyReason::PurposeNotGranted)
            } else if !roles.iter().any(|r| grant_roles.contains(&r.as_str())) {
                Some(DenyReason::RoleNotGranted)
            } else if !grant_ops.contains(&op.as_str()) {
                Some(DenyReason::OperationNotGranted)
            } else if case_rule >= 1 && case.is_none() {
                Some(DenyReason::CaseRefRequired)
            } else if case_rule == 2 && case != Some("MZ-2026-1") {
                Some(DenyReason::CaseRefFormat)
            } else {
                None
            };
            match (decision, expected) {
                (Decision::Allow(a), None) => {
                    prop_assert_eq!(a.grant.id().as_str(), "g");
                    let fields: Vec<&str> = a.fields.iter().map(|f| f.name.as_str()).collect();
                    prop_assert_eq!(fields, ["name"]);
                }
                (Decision::Deny(d), Some(reason)) => {
                    prop_assert_eq!(d.reason, reason);
                    // The caller is told the reason it was refused for, with its own terms.
                    let told = match &d.detail {
                        DenyDetail::PurposeNotGranted { purpose: p, consumer, dataset } => {
                            reason == DenyReason::PurposeNotGranted && p == purpose && consumer == "minzheng" && dataset == "gongan.hukou"
                        }
                        DenyDetail::RoleNotGranted { dataset, purpose: p } => {
                            reason == DenyReason::RoleNotGranted && p == purpose && dataset == "gongan.hukou"
                        }
                        DenyDetail::OperationNotGranted { operation, purpose: p, .. } => {
                            reason == DenyReason::OperationNotGranted && *operation == op && p == purpose
                        }
                        DenyDetail::CaseRefRequired { grant } => reason == DenyReason::CaseRefRequired && grant == "g",
                        DenyDetail::CaseRefFormat { grant, pattern: p } => {
                            reason == DenyReason::CaseRefFormat && grant == "g" && p == pattern
                        }
                        _ => false,
                    };
                    prop_assert!(told, "{:?} told as {:?}", reason, d.detail);
                }
                (Decision::Allow(_), Some(reason)) => prop_assert!(false, "allowed, the model refuses for {:?}", reason),
                (Decision::Deny(d), None) => prop_assert!(false, "refused for {:?}, the model allows", d.reason),
            }
        }
    }
}
