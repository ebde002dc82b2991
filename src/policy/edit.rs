//! Changing the policy set: one grant or dataset at a time, validated as a
//! whole before anything is written, written atomically, never half applied.
//!
//! A change is first *prepared* against the sources in force: the files it
//! rewrites are rendered, the whole resulting set is validated with the same
//! checks as start-up, and the access it changes is computed. Only a
//! prepared change can be applied; applying writes each file through a
//! temporary file, fsync and rename, then fsyncs the directory.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::diff::{AccessChange, diff};
use super::load::{PolicyError, PolicySet, PolicySources, validate};
use super::model::{DatasetSpec, GrantSpec, GrantsFile};
use crate::domain::hex;
use crate::domain::{DatasetId, GrantId};

/// What is being changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create or replace a grant.
    PutGrant(Box<GrantSpec>),
    /// Remove a grant.
    DeleteGrant(GrantId),
    /// Create or replace a catalog entry.
    PutDataset(Box<DatasetSpec>),
    /// Remove a catalog entry (refused while grants reference it).
    DeleteDataset(DatasetId),
}

impl Change {
    /// `grant` or `dataset`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PutGrant(_) | Self::DeleteGrant(_) => "grant",
            Self::PutDataset(_) | Self::DeleteDataset(_) => "dataset",
        }
    }

    /// The id of what is changed.
    pub fn id(&self) -> String {
        match self {
            Self::PutGrant(g) => g.id.to_string(),
            Self::DeleteGrant(id) => id.to_string(),
            Self::PutDataset(d) => d.id.to_string(),
            Self::DeleteDataset(id) => id.to_string(),
        }
    }
}

/// Why a change cannot be prepared.
#[derive(Debug, Clone)]
pub enum EditError {
    /// The resulting set would not load; every problem, located.
    Invalid(Vec<PolicyError>),
    /// Deleting something that does not exist.
    NotFound,
    /// Deleting a dataset that grants still reference.
    InUse(Vec<String>),
}

/// A validated change, ready to apply.
#[derive(Debug)]
pub struct Prepared {
    /// The set as it will be.
    pub set: PolicySet,
    /// Files to write (`Some`) or remove (`None`), relative to the policy directory.
    pub writes: Vec<(String, Option<String>)>,
    /// The entry as TOML before, if it existed.
    pub before: Option<String>,
    /// The entry as TOML after, unless deleted.
    pub after: Option<String>,
    /// Who gains or loses which fields.
    pub access: Vec<AccessChange>,
}

/// A summary of a prepared change, for answers and history.
#[derive(Debug, Clone, Serialize)]
pub struct ChangeSummary {
    /// `grant` or `dataset`.
    pub kind: &'static str,
    /// Its id.
    pub id: String,
    /// Access changes, one line each.
    pub access: Vec<String>,
}

/// The entity tag of a grant: its version and a hash of its content.
pub fn grant_etag(g: &GrantSpec) -> String {
    let json = serde_json::to_vec(g).unwrap_or_default();
    format!(
        "\"g{}-{}\"",
        g.version,
        hex(&crate::audit::event::sha256(&json)[..6])
    )
}

/// The entity tag of a dataset: a hash of its content.
pub fn dataset_etag(d: &DatasetSpec) -> String {
    let json = serde_json::to_vec(d).unwrap_or_default();
    format!("\"d-{}\"", hex(&crate::audit::event::sha256(&json)[..6]))
}

/// A grant as the TOML of a one-grant file.
pub fn grant_toml(g: &GrantSpec) -> String {
    toml::to_string(&GrantsFile {
        grants: vec![g.clone()],
    })
    .unwrap_or_default()
}

/// A dataset as the TOML of its file.
pub fn dataset_toml(d: &DatasetSpec) -> String {
    toml::to_string(d).unwrap_or_default()
}

/// Leading comment lines of a file, kept when it is rewritten.
fn header(text: &str) -> String {
    text.lines()
        .take_while(|l| l.starts_with('#') || l.trim().is_empty())
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Prepares `change` against the set in force.
pub fn prepare(current: &PolicySet, change: &Change) -> Result<Prepared, EditError> {
    let mut sources = current.sources.clone();
    let mut writes = Vec::new();
    let (before, after);
    match change {
        Change::PutGrant(g) => {
            let existing = current.grants.get(&g.id);
            before = existing.map(|e| grant_toml(&e.spec));
            after = Some(grant_toml(g));
            let file = existing.map_or_else(|| format!("grants/{}.toml", g.id), |e| e.file.clone());
            let text = render_grants(&sources, &file, Some(g), &g.id);
            sources.files.insert(file.clone(), text.clone());
            writes.push((file, Some(text)));
        }
        Change::DeleteGrant(id) => {
            let existing = current.grants.get(id).ok_or(EditError::NotFound)?;
            before = Some(grant_toml(&existing.spec));
            after = None;
            let file = existing.file.clone();
            let text = render_grants(&sources, &file, None, id);
            if text.is_empty() {
                sources.files.remove(&file);
                writes.push((file, None));
            } else {
                sources.files.insert(file.clone(), text.clone());
                writes.push((file, Some(text)));
            }
        }
        Change::PutDataset(d) => {
            let existing = current.datasets.get(&d.id);
            before = existing.map(|e| dataset_toml(&e.spec));
            let file = format!("datasets/{}.toml", d.id);
            // A new dataset's file has no leading comment to keep.
            let keep = existing
                .and_then(|e| sources.files.get(&e.file))
                .map(|t| header(t))
                .unwrap_or_default();
            let text = format!("{keep}{}", dataset_toml(d));
            after = Some(dataset_toml(d));
            sources.files.insert(file.clone(), text.clone());
            writes.push((file, Some(text)));
        }
        Change::DeleteDataset(id) => {
            let existing = current.datasets.get(id).ok_or(EditError::NotFound)?;
            let users: Vec<String> = current
                .grants
                .values()
                .filter(|g| g.spec.access.iter().any(|a| a.dataset == *id))
                .map(|g| g.spec.id.to_string())
                .collect();
            if !users.is_empty() {
                return Err(EditError::InUse(users));
            }
            before = Some(dataset_toml(&existing.spec));
            after = None;
            sources.files.remove(&existing.file);
            writes.push((existing.file.clone(), None));
        }
    }
    let set = validate(sources).map_err(EditError::Invalid)?;
    let access = diff(current, &set);
    Ok(Prepared {
        set,
        writes,
        before,
        after,
        access,
    })
}

/// The text of grant file `file` with grant `id` replaced by `new` (or removed).
/// Other grants in the file keep their order; leading comments are kept.
fn render_grants(
    sources: &PolicySources,
    file: &str,
    new: Option<&GrantSpec>,
    id: &GrantId,
) -> String {
    let old = sources.files.get(file).map(String::as_str).unwrap_or("");
    // The file is a source of the set in force, which loaded, so it parses;
    // a file not there yet holds no grant.
    let mut grants = toml::from_str::<GrantsFile>(old)
        .map(|f| f.grants)
        .unwrap_or_default();
    match (grants.iter().position(|g| g.id == *id), new) {
        (Some(i), Some(g)) => grants[i] = g.clone(),
        (Some(i), None) => {
            grants.remove(i);
        }
        (None, Some(g)) => grants.push(g.clone()),
        (None, None) => {}
    }
    if grants.is_empty() {
        return String::new();
    }
    let body = toml::to_string(&GrantsFile { grants }).unwrap_or_default();
    format!("{}{body}", header(old))
}

/// Writes a prepared change's files under `dir`: each through a temporary
/// file, fsync and rename; removals by unlink; then the directories are fsynced.
pub fn apply_files(dir: &Path, writes: &[(String, Option<String>)]) -> std::io::Result<()> {
    for (rel, content) in writes {
        let path = dir.join(rel);
        match content {
            Some(text) => {
                let tmp = path.with_extension("toml.tmp");
                {
                    crate::faults::point(dir, "policy.write")?;
                    let mut f = std::fs::File::create(&tmp)?;
                    f.write_all(text.as_bytes())?;
                    crate::faults::point(dir, "policy.sync")?;
                    f.sync_all()?;
                }
                crate::faults::point(dir, "policy.rename")?;
                std::fs::rename(&tmp, &path)?;
            }
            None => {
                crate::faults::point(dir, "policy.remove")?;
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if let Some(parent) = path.parent() {
            crate::faults::point(dir, "policy.dir_sync")?;
            std::fs::File::open(parent)?.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::load::load_dir;

    fn current() -> PolicySet {
        load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn replacing_a_grant_keeps_its_neighbours_and_comments() {
        let set = current();
        let mut g = set
            .grants
            .get("minzheng-dibao-shebao")
            .unwrap()
            .spec
            .clone();
        g.version += 1;
        g.access[0]
            .fields
            .retain(|f| f.as_str() != "monthly_pension");
        let p = prepare(&set, &Change::PutGrant(Box::new(g))).unwrap();
        assert_eq!(p.writes.len(), 1);
        let (file, text) = &p.writes[0];
        assert_eq!(file, "grants/minzheng-dibao.toml");
        let text = text.as_deref().unwrap();
        assert!(text.starts_with("# 民政局"));
        assert!(
            text.contains("minzheng-dibao-hukou") && text.contains("minzheng-dibao-budongchan")
        );
        // It can no longer be looked up, nor verified.
        assert_eq!(p.access.len(), 2, "{:?}", p.access);
        assert!(
            p.access
                .iter()
                .all(|c| c.lost == [("monthly_pension".to_owned(), c.lost[0].1.clone())])
        );
    }

    #[test]
    fn an_invalid_change_is_refused_with_located_errors() {
        let set = current();
        let mut g = set.grants.get("yibao-enroll-hukou").unwrap().spec.clone();
        g.access[0].dataset = DatasetId::parse("weijian.bingli").unwrap();
        match prepare(&set, &Change::PutGrant(Box::new(g))) {
            Err(EditError::Invalid(errs)) => assert!(
                errs.iter()
                    .any(|e| e.file == "grants/yibao-enroll.toml"
                        && e.message.contains("class none")),
                "{errs:?}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_dataset_in_use_cannot_be_deleted() {
        let set = current();
        match prepare(
            &set,
            &Change::DeleteDataset(DatasetId::parse("renshe.shebao").unwrap()),
        ) {
            Err(EditError::InUse(users)) => assert_eq!(users, ["minzheng-dibao-shebao"]),
            other => panic!("{other:?}"),
        }
        let p = prepare(
            &set,
            &Change::DeleteDataset(DatasetId::parse("minzheng.dibao").unwrap()),
        )
        .unwrap();
        assert_eq!(
            p.writes,
            [("datasets/minzheng.dibao.toml".to_owned(), None)]
        );
    }

    #[test]
    fn deleting_the_last_grant_of_a_file_removes_the_file() {
        let set = current();
        let p = prepare(
            &set,
            &Change::DeleteGrant(GrantId::parse("yibao-enroll-hukou").unwrap()),
        )
        .unwrap();
        assert_eq!(p.writes, [("grants/yibao-enroll.toml".to_owned(), None)]);
        assert!(
            p.access
                .iter()
                .all(|c| c.key.consumer == "yibao" && !c.lost.is_empty())
        );
    }
}
