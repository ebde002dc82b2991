//! What a policy change does to access: who gains or loses which fields.
//!
//! Both sets are flattened to "consumer, role, purpose, operation, dataset →
//! fields and how each is disclosed", then compared entry by entry. Used by
//! `tongban policy diff`, by the admin API's validation, and in history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use super::load::PolicySet;
use super::model::Operation;

/// Who may do what, for what purpose, on which dataset.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AccessKey {
    /// The consuming department.
    pub consumer: String,
    /// One of the roles the grant names.
    pub role: String,
    /// The purpose.
    pub purpose: String,
    /// The operation.
    pub operation: String,
    /// The dataset.
    pub dataset: String,
}

/// How a field is available: `plain`, `masked:<mask>` or `verify_only`.
pub type Disclosure = String;

/// Field → how, for one access key.
pub type AccessFields = BTreeMap<String, Disclosure>;

/// The flattened access of a policy set. Grants not in force today still count:
/// the diff is about what the files say.
pub fn access_map(set: &PolicySet) -> BTreeMap<AccessKey, AccessFields> {
    let mut map: BTreeMap<AccessKey, AccessFields> = BTreeMap::new();
    for grant in set.grants.values() {
        let g = &grant.spec;
        for access in &g.access {
            for op in &g.operations {
                let mut fields = AccessFields::new();
                if *op != Operation::Verify {
                    for f in &access.fields {
                        fields.insert(f.to_string(), "plain".into());
                    }
                    for (f, m) in &access.masked {
                        // A mask serializes as its name.
                        let mask = serde_json::to_value(m)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default();
                        fields.insert(f.to_string(), format!("masked:{mask}"));
                    }
                } else {
                    for f in access
                        .fields
                        .iter()
                        .chain(access.masked.keys())
                        .chain(&access.verify_only)
                    {
                        fields.insert(f.to_string(), "verify".into());
                    }
                }
                if fields.is_empty() {
                    continue;
                }
                for role in &g.roles {
                    for purpose in &g.purposes {
                        let key = AccessKey {
                            consumer: g.consumer.to_string(),
                            role: role.to_string(),
                            purpose: purpose.to_string(),
                            operation: op.as_str().to_owned(),
                            dataset: access.dataset.to_string(),
                        };
                        let entry = map.entry(key).or_default();
                        for (f, how) in &fields {
                            // Where two grants overlap, the more open disclosure counts.
                            let keep = entry.get(f).is_some_and(|old| rank(old) >= rank(how));
                            if !keep {
                                entry.insert(f.clone(), how.clone());
                            }
                        }
                    }
                }
            }
        }
    }
    map
}

fn rank(how: &str) -> u8 {
    match how {
        "plain" => 3,
        h if h.starts_with("masked") => 2,
        _ => 1,
    }
}

/// One change of access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessChange {
    /// Whose access.
    pub key: AccessKey,
    /// Fields newly available, and how.
    pub gained: Vec<(String, Disclosure)>,
    /// Fields no longer available, and how they were.
    pub lost: Vec<(String, Disclosure)>,
    /// Fields available differently: (field, before, after).
    pub changed: Vec<(String, Disclosure, Disclosure)>,
}

impl fmt::Display for AccessChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = &self.key;
        let who = format!(
            "{}/{} {} {} for {}",
            k.consumer, k.role, k.operation, k.dataset, k.purpose
        );
        let list = |v: &[(String, Disclosure)]| {
            v.iter()
                .map(|(f, h)| {
                    if h == "plain" || h == "verify" {
                        f.clone()
                    } else {
                        format!("{f} ({h})")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut lines = Vec::new();
        if !self.gained.is_empty() {
            lines.push(format!("+ {who}: gains {}", list(&self.gained)));
        }
        if !self.lost.is_empty() {
            lines.push(format!("- {who}: loses {}", list(&self.lost)));
        }
        for (field, before, after) in &self.changed {
            lines.push(format!("~ {who}: {field} {before} → {after}"));
        }
        f.write_str(&lines.join("\n"))
    }
}

/// The access changes from `before` to `after`.
pub fn diff(before: &PolicySet, after: &PolicySet) -> Vec<AccessChange> {
    let a = access_map(before);
    let b = access_map(after);
    let keys: BTreeSet<&AccessKey> = a.keys().chain(b.keys()).collect();
    let empty = AccessFields::new();
    let mut out = Vec::new();
    for key in keys {
        let (old, new) = (a.get(key).unwrap_or(&empty), b.get(key).unwrap_or(&empty));
        let gained: Vec<_> = new
            .iter()
            .filter(|(f, _)| !old.contains_key(*f))
            .map(|(f, h)| (f.clone(), h.clone()))
            .collect();
        let lost: Vec<_> = old
            .iter()
            .filter(|(f, _)| !new.contains_key(*f))
            .map(|(f, h)| (f.clone(), h.clone()))
            .collect();
        let changed: Vec<_> = old
            .iter()
            .filter_map(|(f, h)| {
                new.get(f)
                    .filter(|n| *n != h)
                    .map(|n| (f.clone(), h.clone(), n.clone()))
            })
            .collect();
        if !(gained.is_empty() && lost.is_empty() && changed.is_empty()) {
            out.push(AccessChange {
                key: key.clone(),
                gained,
                lost,
                changed,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::{PolicySources, validate};

    fn sample() -> PolicySources {
        PolicySources::read_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"))
            .unwrap()
    }

    #[test]
    fn names_who_gains_and_loses_which_fields() {
        let before = validate(sample()).unwrap();
        let mut edited = sample();
        let text = edited.files.get_mut("grants/yibao-enroll.toml").unwrap();
        *text = text.replace(
            "fields = [\"name\", \"gender\", \"birth_date\", \"hukou_address\"]",
            "fields = [\"name\", \"gender\", \"phone\"]\nmasked = { hukou_address = \"address\" }",
        );
        let after = validate(edited).unwrap();
        let changes = diff(&before, &after);
        assert_eq!(changes.len(), 1, "{changes:?}");
        let c = &changes[0];
        assert_eq!(c.key.consumer, "yibao");
        assert_eq!(c.gained, [("phone".to_owned(), "plain".to_owned())]);
        assert_eq!(c.lost, [("birth_date".to_owned(), "plain".to_owned())]);
        assert_eq!(
            c.changed,
            [(
                "hukou_address".to_owned(),
                "plain".to_owned(),
                "masked:address".to_owned()
            )]
        );
        let text = c.to_string();
        assert!(
            text.contains("+ yibao/enrollment_clerk lookup gongan.hukou")
                && text.contains("- yibao"),
            "{text}"
        );
        assert!(diff(&before, &before).is_empty());
    }
}
