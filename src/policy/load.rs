//! Reading a policy directory and checking it as a whole.
//!
//! Every error names its file and entry, and all errors are reported at once,
//! so an administrator can fix a directory in one pass:
//! `grants/minzheng-dibao.toml: grant "minzheng-dibao-hukou": field "ethnicty" is not in dataset gongan.hukou`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use time::Date;
use time::macros::format_description;

use super::model::{
    AccessSpec, DatasetSpec, Department, DepartmentsFile, FieldSpec, GrantSpec, GrantsFile,
    Operation, Sensitivity, SharingClass,
};
use crate::domain::{DatasetId, DeptId, FieldName, GrantId, hex};
use crate::pipeline::rate_limit::RateSpec;

/// The roles no grant may name (the one role model: staff, stewards,
/// residents), see [`crate::pipeline::authn::STAFF_ROLES`].
pub use crate::pipeline::authn::STAFF_ROLES;

/// One problem found in a policy directory, with its place.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PolicyError {
    /// The file, relative to the policy directory.
    pub file: String,
    /// The entry in the file (`grant "id"`, `field "name"`), where there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.entry {
            Some(entry) => write!(f, "{}: {}: {}", self.file, entry, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// The text of every policy file, keyed by path relative to the policy directory.
///
/// Loading from disk and validating a proposed edit both go through this form,
/// so they give the same messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// `departments.toml`, `datasets/<id>.toml`, `grants/<name>.toml` → file text.
    pub files: BTreeMap<String, String>,
}

impl PolicySources {
    /// Reads `departments.toml`, `datasets/*.toml` and `grants/*.toml` under `dir`.
    pub fn read_dir(dir: &Path) -> Result<Self, PolicyError> {
        let io_err = |file: &str, e: std::io::Error| PolicyError {
            file: file.to_owned(),
            entry: None,
            message: format!("cannot be read: {e}"),
        };
        let mut files = BTreeMap::new();
        let departments = dir.join("departments.toml");
        let text = std::fs::read_to_string(&departments)
            .map_err(|e| io_err(&departments.display().to_string(), e))?;
        files.insert("departments.toml".to_owned(), text);
        for sub in ["datasets", "grants"] {
            let folder = dir.join(sub);
            let entries =
                std::fs::read_dir(&folder).map_err(|e| io_err(&folder.display().to_string(), e))?;
            for entry in entries {
                let entry = entry.map_err(|e| io_err(sub, e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.ends_with(".toml") || name.starts_with('.') {
                    continue;
                }
                let rel = format!("{sub}/{name}");
                let text = std::fs::read_to_string(entry.path()).map_err(|e| io_err(&rel, e))?;
                files.insert(rel, text);
            }
        }
        Ok(Self { files })
    }

    /// A short content hash: the version of this policy set.
    pub fn version(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        for (path, text) in &self.files {
            for part in [path.as_bytes(), &[0], text.as_bytes(), &[0]] {
                ctx.update(part);
            }
        }
        hex(&ctx.finish().as_ref()[..6])
    }
}

/// A dataset of the catalog, with its fields indexed by name.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The catalog entry as written.
    pub spec: DatasetSpec,
    /// The file it came from.
    pub file: String,
    /// Its fields by name.
    pub fields: BTreeMap<FieldName, FieldSpec>,
}

/// A grant that passed validation, with its conditions parsed.
#[derive(Debug, Clone)]
pub struct Grant {
    /// The grant as written.
    pub spec: GrantSpec,
    /// The file it came from.
    pub file: String,
    /// First day in force.
    pub valid_from: Option<Date>,
    /// Last day in force.
    pub valid_until: Option<Date>,
    /// The grant-wide rate quota.
    pub quota: Option<RateSpec>,
    /// The case reference pattern, anchored at both ends.
    pub case_ref_pattern: Option<regex::Regex>,
}

impl Grant {
    /// Whether it is in force on `today` (local).
    pub fn in_force(&self, today: Date) -> bool {
        self.valid_from.is_none_or(|from| today >= from)
            && self.valid_until.is_none_or(|until| today <= until)
    }
}

/// A whole, consistent policy set.
#[derive(Debug, Clone)]
pub struct PolicySet {
    /// Content hash of the sources.
    pub version: String,
    /// Known departments.
    pub departments: BTreeMap<DeptId, Department>,
    /// The catalog.
    pub datasets: BTreeMap<DatasetId, Dataset>,
    /// The grants.
    pub grants: BTreeMap<GrantId, Grant>,
    /// Purposes' titles, by code (`[[purpose]]` of `departments.toml`).
    pub purposes: BTreeMap<String, String>,
    /// The sources it was built from.
    pub sources: PolicySources,
}

/// Every problem found in a set of sources, located.
#[derive(Default)]
struct Problems(Vec<PolicyError>);

impl Problems {
    fn add(&mut self, file: &str, entry: Option<String>, message: String) {
        self.0.push(PolicyError {
            file: file.to_owned(),
            entry,
            message,
        });
    }
}

/// What the policy files declare, parsed but not yet checked together.
type Parsed<'s> = (
    BTreeMap<DeptId, Department>,
    BTreeMap<DatasetId, Dataset>,
    Vec<(&'s String, GrantSpec)>,
);

/// Parses and validates a set of policy sources, reporting every error found.
pub fn validate(sources: PolicySources) -> Result<PolicySet, Vec<PolicyError>> {
    let mut errors = Problems::default();
    let (departments, datasets, grant_specs) = parse_files(&sources, &mut errors);
    check_datasets(&departments, &datasets, &mut errors);
    let grants = check_grants(grant_specs, &departments, &datasets, &mut errors);
    let purposes = purposes_of(&sources, &mut errors);
    if !errors.0.is_empty() {
        return Err(errors.0);
    }
    Ok(PolicySet {
        version: sources.version(),
        departments,
        datasets,
        grants,
        purposes,
        sources,
    })
}

/// The purposes' titles `departments.toml` gives, each code once.
fn purposes_of(sources: &PolicySources, errors: &mut Problems) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(text) = sources.files.get("departments.toml") else {
        return out;
    };
    // Its syntax errors are reported where the departments are read.
    let Ok(parsed) = toml::from_str::<DepartmentsFile>(text) else {
        return out;
    };
    for p in parsed.purposes {
        let entry = Some(format!("purpose \"{}\"", p.id));
        let well_formed = crate::domain::Purpose::parse(&p.id).is_ok();
        if !well_formed {
            errors.add("departments.toml", entry, "is not a purpose code".into());
        } else if p.title.trim().is_empty() {
            errors.add("departments.toml", entry, "needs a title".into());
        } else if out.insert(p.id.clone(), p.title).is_some() {
            errors.add("departments.toml", entry, "duplicate purpose id".into());
        }
    }
    out
}

/// Each file parsed by its place: `departments.toml`, `datasets/`, `grants/`.
fn parse_files<'s>(sources: &'s PolicySources, errors: &mut Problems) -> Parsed<'s> {
    let mut departments = BTreeMap::new();
    let mut datasets = BTreeMap::new();
    let mut grant_specs = Vec::new();
    for (file, text) in &sources.files {
        if file == "departments.toml" {
            match toml::from_str::<DepartmentsFile>(text) {
                Ok(parsed) => {
                    for d in parsed.departments {
                        let entry = Some(format!("department \"{}\"", d.id));
                        if d.id.as_str() == crate::pipeline::authn::RESIDENTS {
                            errors.add(
                                file,
                                entry.clone(),
                                "\"resident\" names every resident's token, not a department: choose another id".into(),
                            );
                        }
                        if departments.insert(d.id.clone(), d).is_some() {
                            errors.add(file, entry, "duplicate department id".into());
                        }
                    }
                }
                Err(e) => errors.add(file, None, syntax(&e)),
            }
        } else if file.starts_with("datasets/") {
            match toml::from_str::<DatasetSpec>(text) {
                Ok(spec) => {
                    let entry = Some(format!("dataset \"{}\"", spec.id));
                    let expected = format!("datasets/{}.toml", spec.id);
                    if *file != expected {
                        errors.add(file, entry.clone(), format!("must be stored as {expected}"));
                    }
                    let fields = dataset_fields(&spec, &mut |m| errors.add(file, entry.clone(), m));
                    let dataset = Dataset {
                        spec,
                        file: file.clone(),
                        fields,
                    };
                    if datasets.insert(dataset.spec.id.clone(), dataset).is_some() {
                        errors.add(file, entry, "duplicate dataset id".into());
                    }
                }
                Err(e) => errors.add(file, None, syntax(&e)),
            }
        } else if file.starts_with("grants/") {
            match toml::from_str::<GrantsFile>(text) {
                Ok(parsed) if parsed.grants.is_empty() => {
                    errors.add(file, None, "holds no [[grant]] entry".into());
                }
                Ok(parsed) => grant_specs.extend(parsed.grants.into_iter().map(|g| (file, g))),
                Err(e) => errors.add(file, None, syntax(&e)),
            }
        }
    }
    if departments.is_empty() && !sources.files.contains_key("departments.toml") {
        errors.add("departments.toml", None, "is missing".into());
    }

    (departments, datasets, grant_specs)
}

/// Each dataset against its id and the departments.
fn check_datasets(
    departments: &BTreeMap<DeptId, Department>,
    datasets: &BTreeMap<DatasetId, Dataset>,
    errors: &mut Problems,
) {
    for dataset in datasets.values() {
        let entry = Some(format!("dataset \"{}\"", dataset.spec.id));
        if dataset.spec.owner.as_str() != dataset.spec.id.owner() {
            errors.add(
                &dataset.file,
                entry.clone(),
                format!(
                    "owner \"{}\" does not match the id's prefix \"{}\"",
                    dataset.spec.owner,
                    dataset.spec.id.owner()
                ),
            );
        }
        if let Some(problem) = dataset.spec.provider.as_ref().and_then(provider_problem) {
            errors.add(&dataset.file, entry.clone(), problem);
        }
        if !departments.contains_key(&dataset.spec.owner) {
            errors.add(
                &dataset.file,
                entry,
                format!(
                    "owner \"{}\" is not in departments.toml",
                    dataset.spec.owner
                ),
            );
        }
    }
}

/// Each grant against the departments and the catalog; ids unique.
fn check_grants(
    grant_specs: Vec<(&String, GrantSpec)>,
    departments: &BTreeMap<DeptId, Department>,
    datasets: &BTreeMap<DatasetId, Dataset>,
    errors: &mut Problems,
) -> BTreeMap<GrantId, Grant> {
    let mut grants = BTreeMap::new();
    for (file, spec) in grant_specs {
        let entry = format!("grant \"{}\"", spec.id);
        let mut problems = Vec::new();
        let grant = check_grant(spec, file, departments, datasets, &mut problems);
        for m in problems {
            errors.add(file, Some(entry.clone()), m);
        }
        if let Some(grant) = grant {
            if let Some(previous) = grants.insert(grant.spec.id.clone(), grant) {
                errors.add(
                    file,
                    Some(entry),
                    format!("duplicate grant id (also in {})", previous.file),
                );
            }
        }
    }
    grants
}

/// What is wrong with a dataset's provider, if anything.
fn provider_problem(provider: &crate::policy::model::ProviderSpec) -> Option<String> {
    let crate::policy::model::ProviderSpec::Http {
        base_url,
        timeout_ms,
        ..
    } = provider
    else {
        return None;
    };
    if !(1..=60_000).contains(timeout_ms) {
        return Some("provider.timeout_ms must be between 1 and 60000".into());
    }
    let uri: axum::http::Uri = match base_url.parse() {
        Ok(u) => u,
        Err(_) => return Some(format!("provider.base_url \"{base_url}\" is not a URL")),
    };
    if uri.scheme_str() != Some("https") {
        return Some(format!(
            "provider.base_url \"{base_url}\" must be https:// (upstreams are called over mutual TLS)"
        ));
    }
    match uri.authority() {
        None => Some(format!("provider.base_url \"{base_url}\" names no host")),
        Some(a) if a.as_str().contains('@') => Some(format!(
            "provider.base_url \"{base_url}\" must not carry credentials"
        )),
        Some(_) if uri.query().is_some() => Some(format!(
            "provider.base_url \"{base_url}\" must not have a query"
        )),
        Some(_) => None,
    }
}

/// Reads and validates a policy directory.
pub fn load_dir(dir: &Path) -> Result<PolicySet, Vec<PolicyError>> {
    validate(PolicySources::read_dir(dir).map_err(|e| vec![e])?)
}

fn syntax(e: &toml::de::Error) -> String {
    // toml's message already carries the line and column and a caret excerpt.
    format!("is not valid: {}", e.to_string().trim_end())
}

fn dataset_fields(
    spec: &DatasetSpec,
    err: &mut dyn FnMut(String),
) -> BTreeMap<FieldName, FieldSpec> {
    let mut fields = BTreeMap::new();
    if spec.fields.is_empty() {
        err("declares no fields".into());
    }
    for f in &spec.fields {
        if fields.insert(f.name.clone(), f.clone()).is_some() {
            err(format!("field \"{}\" is declared twice", f.name));
        }
    }
    fields
}

/// A grant's conditions that are parsed once, at load.
struct ParsedConditions {
    valid_from: Option<Date>,
    valid_until: Option<Date>,
    quota: Option<RateSpec>,
    case_ref_pattern: Option<regex::Regex>,
}

/// Parses a grant's validity window, quota and case-reference pattern,
/// reporting what does not parse.
fn parse_conditions(c: &super::model::Conditions, problems: &mut Vec<String>) -> ParsedConditions {
    let valid_from = c
        .valid_from
        .as_deref()
        .and_then(|s| parse_day(s, "valid_from", problems));
    let valid_until = c
        .valid_until
        .as_deref()
        .and_then(|s| parse_day(s, "valid_until", problems));
    if let (Some(from), Some(until)) = (valid_from, valid_until) {
        if from > until {
            problems.push(format!("valid_from {from} is after valid_until {until}"));
        }
    }
    let quota = c
        .quota
        .as_deref()
        .and_then(|q| match q.parse::<RateSpec>() {
            Ok(q) => Some(q),
            Err(e) => {
                problems.push(format!("quota \"{q}\": {e}"));
                None
            }
        });
    let case_ref_pattern = c.case_ref_pattern.as_deref().and_then(|p| {
        match regex::RegexBuilder::new(&format!("^(?:{p})$"))
            .size_limit(1 << 16)
            .build()
        {
            Ok(re) => Some(re),
            Err(e) => {
                problems.push(format!(
                    "case_ref_pattern \"{p}\" is not a valid regular expression: {}",
                    e.to_string().lines().last().unwrap_or("")
                ));
                None
            }
        }
    });
    ParsedConditions {
        valid_from,
        valid_until,
        quota,
        case_ref_pattern,
    }
}

fn check_grant(
    spec: GrantSpec,
    file: &str,
    departments: &BTreeMap<DeptId, Department>,
    datasets: &BTreeMap<DatasetId, Dataset>,
    problems: &mut Vec<String>,
) -> Option<Grant> {
    if !departments.contains_key(&spec.consumer) {
        problems.push(format!(
            "consumer \"{}\" is not in departments.toml",
            spec.consumer
        ));
    }
    if spec.roles.is_empty() {
        problems.push("roles is empty: name at least one role".into());
    }
    for role in &spec.roles {
        if STAFF_ROLES.contains(&role.as_str()) {
            problems.push(format!(
                "role \"{role}\" is reserved (privacy_officer, policy_admin, data_authority, data_steward, resident open the gateway's own surfaces) and may not appear in a grant"
            ));
        }
    }
    if spec.purposes.is_empty() {
        problems.push("purposes is empty: name at least one purpose".into());
    }
    if spec.operations.is_empty() {
        problems.push("operations is empty: name at least one of lookup, verify, batch".into());
    }
    if spec.basis.trim().is_empty() {
        problems.push("basis is empty: name the statutory duty this sharing serves".into());
    }
    if spec.access.is_empty() {
        problems.push("access is empty: name at least one dataset".into());
    }
    let c = &spec.conditions;
    let ParsedConditions {
        valid_from,
        valid_until,
        quota,
        case_ref_pattern,
    } = parse_conditions(c, problems);
    if c.case_ref_pattern.is_some() && !c.case_ref_required {
        problems.push("case_ref_pattern is set but case_ref_required is not".into());
    }
    if let Some(reason) = &c.case_ref_exempt_reason {
        if c.case_ref_required {
            problems.push(
                "case_ref_exempt_reason is set but case_ref_required is true: a grant either requires a case reference or says why it needs none".into(),
            );
        }
        let n = reason.trim().chars().count();
        if n == 0 || n > 500 {
            problems.push("case_ref_exempt_reason must be 1 to 500 characters".into());
        }
    }
    if spec.operations.contains(&Operation::Batch) && c.batch_limit.is_none_or(|n| n == 0) {
        problems.push("batch is granted but conditions.batch_limit is not set (1 or more)".into());
    }

    let mut seen_datasets = BTreeSet::new();
    for access in &spec.access {
        if !seen_datasets.insert(&access.dataset) {
            problems.push(format!(
                "dataset {} is listed twice in access",
                access.dataset
            ));
        }
        match datasets.get(&access.dataset) {
            Some(dataset) => check_access(access, dataset, &spec, problems),
            None => problems.push(format!("dataset {} is not in the catalog", access.dataset)),
        }
    }
    if c.verify_budget_per_resident_day == Some(0) {
        problems.push("conditions.verify_budget_per_resident_day must be 1 or more".into());
    }
    if problems.is_empty() {
        Some(Grant {
            spec,
            file: file.to_owned(),
            valid_from,
            valid_until,
            quota,
            case_ref_pattern,
        })
    } else {
        None
    }
}

/// One `access` entry of a grant against its dataset.
fn check_access(
    access: &AccessSpec,
    dataset: &Dataset,
    spec: &GrantSpec,
    problems: &mut Vec<String>,
) {
    let c = &spec.conditions;
    if dataset.spec.class == SharingClass::None {
        problems.push(format!(
            "dataset {} is of class none (不予共享) and cannot be granted",
            access.dataset
        ));
    }
    if dataset.spec.class == SharingClass::Conditional
        && !c.case_ref_required
        && c.case_ref_exempt_reason.is_none()
    {
        problems.push(format!(
            "dataset {} is conditional (有条件共享): set conditions.case_ref_required = true, or say why this grant needs no case reference in conditions.case_ref_exempt_reason",
            access.dataset
        ));
    }
    let mut named = BTreeSet::new();
    let all = access
        .fields
        .iter()
        .chain(access.masked.keys())
        .chain(&access.verify_only);
    for field in all {
        if !named.insert(field) {
            problems.push(format!(
                "field \"{field}\" is listed more than once among fields, masked and verify_only"
            ));
        }
        match dataset.fields.get(field) {
            None => problems.push(format!(
                "field \"{field}\" is not in dataset {}",
                access.dataset
            )),
            Some(f) if f.sensitivity == Sensitivity::Sensitive && !c.case_ref_required => {
                problems.push(format!(
                    "field \"{field}\" is sensitive personal information: conditions.case_ref_required must be true"
                ));
            }
            Some(_) => {}
        }
    }
    for (field, mask) in &access.masked {
        if let Some(f) = dataset.fields.get(field) {
            if !mask.applies_to(f.kind) {
                problems.push(format!(
                    "mask {mask:?} cannot be applied to field \"{field}\" of type {:?}",
                    f.kind
                ));
            }
        }
    }
    if named.is_empty() {
        problems.push(format!("grants no field of dataset {}", access.dataset));
    }
    if !access.verify_only.is_empty() && !spec.operations.contains(&Operation::Verify) {
        problems.push(format!(
            "verify_only fields of {} need the verify operation",
            access.dataset
        ));
    }
    for p in &access.verify_predicates {
        let kind = dataset.fields.get(&p.field).map(|f| f.kind);
        if !access.verify_only.contains(&p.field) {
            problems.push(format!(
                "verify_predicates: field \"{}\" is not among verify_only (a disclosed field may be verified freely; a masked one not at all)",
                p.field
            ));
        } else if let Some(kind) = kind
            && let Err(e) = crate::pipeline::verify::check_condition(p, kind)
        {
            problems.push(format!("verify_predicates: {e}"));
        }
    }
    for field in &access.verify_only {
        if !access.verify_predicates.iter().any(|p| p.field == *field) {
            problems.push(format!(
                "verify_only field \"{field}\" has no verify_predicates: name what verify may ask of it, e.g. {{ field = \"{field}\", op = \">=\", value = … }}"
            ));
        }
    }
}

fn parse_day(s: &str, what: &str, problems: &mut Vec<String>) -> Option<Date> {
    match Date::parse(s, format_description!("[year]-[month]-[day]")) {
        Ok(d) => Some(d),
        Err(_) => {
            problems.push(format!("{what} \"{s}\" is not a date (YYYY-MM-DD)"));
            None
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn sample() -> PolicySources {
        PolicySources::read_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    #[test]
    fn the_shipped_sample_policies_are_valid() {
        let set = validate(sample()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(set.grants.len() >= 7);
        assert!(set.datasets.contains_key("gongan.hukou"));
    }

    fn with_edit(file: &str, from: &str, to: &str) -> Vec<String> {
        let mut s = sample();
        let text = s.files.get_mut(file).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        *text = text.replacen(from, to, 1);
        match validate(s) {
            Ok(_) => panic!("the edit of {file} was accepted"),
            Err(errs) => errs.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn purposes_have_titles_once_each() {
        let set = validate(sample()).unwrap();
        assert_eq!(set.purposes["dibao_review"], "最低生活保障审核");
        let errs = with_edit(
            "departments.toml",
            "id = \"school_admission\"",
            "id = \"dibao_review\"",
        );
        assert!(
            errs.iter().any(|e| e.contains("duplicate purpose id")),
            "{errs:?}"
        );
        let errs = with_edit(
            "departments.toml",
            "title = \"教师资格认定\"",
            "title = \" \"",
        );
        assert!(errs.iter().any(|e| e.contains("needs a title")), "{errs:?}");
        let errs = with_edit(
            "departments.toml",
            "id = \"survivor_benefits\"",
            "id = \"Survivor Benefits\"",
        );
        assert!(
            errs.iter().any(|e| e.contains("not a purpose code")),
            "{errs:?}"
        );
    }

    #[test]
    fn an_unknown_field_is_reported_with_file_and_grant() {
        let errs = with_edit("grants/minzheng-dibao.toml", "\"gender\"", "\"gendre\"");
        assert_eq!(
            errs,
            [
                "grants/minzheng-dibao.toml: grant \"minzheng-dibao-hukou\": field \"gendre\" is not in dataset gongan.hukou"
            ]
        );
    }

    #[test]
    fn a_grant_on_a_dataset_that_is_not_shared_is_refused() {
        let errs = with_edit(
            "grants/yibao-enroll.toml",
            "\"gongan.hukou\"",
            "\"weijian.bingli\"",
        );
        assert!(errs.iter().any(|e| e.contains("class none")), "{errs:?}");
    }

    #[test]
    fn unknown_masks_empty_purposes_and_duplicates_are_refused() {
        let errs = with_edit(
            "grants/minzheng-dibao.toml",
            "\"id_number\"",
            "\"id_numbr\"",
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("unknown variant `id_numbr`")),
            "{errs:?}"
        );
        let errs = with_edit(
            "grants/yibao-enroll.toml",
            "purposes = [\"medical_insurance_enrollment\"]",
            "purposes = []",
        );
        assert!(
            errs.iter().any(|e| e.contains("purposes is empty")),
            "{errs:?}"
        );
        let errs = with_edit(
            "grants/yibao-enroll.toml",
            "id = \"yibao-enroll-hukou\"",
            "id = \"minzheng-dibao-hukou\"",
        );
        assert!(
            errs.iter().any(|e| e.contains("duplicate grant id")),
            "{errs:?}"
        );
    }

    #[test]
    fn sensitive_fields_need_a_case_reference() {
        let errs = with_edit(
            "grants/minzheng-dibao.toml",
            "case_ref_required = true\n\n[[grant.access]]\ndataset = \"renshe.shebao\"",
            "case_ref_required = false\n\n[[grant.access]]\ndataset = \"renshe.shebao\"",
        );
        assert!(errs.iter().any(|e| e.contains("sensitive")), "{errs:?}");
    }

    #[test]
    fn reserved_roles_cannot_be_granted_records() {
        for role in STAFF_ROLES {
            let errs = with_edit(
                "grants/yibao-enroll.toml",
                "\"enrollment_clerk\"",
                &format!("\"{role}\""),
            );
            assert!(
                errs.iter()
                    .any(|e| e.contains(&format!("role \"{role}\" is reserved"))),
                "{role}: {errs:?}"
            );
        }
    }

    #[test]
    fn a_conditional_grant_requires_a_case_reference_or_says_why_not() {
        let reason = "case_ref_exempt_reason = \"参保登记在窗口即时办结，户籍核验先于受理，此时尚无办件编号\"\n";
        // Neither: refused, naming the grant and the fix.
        let errs = with_edit("grants/yibao-enroll.toml", reason, "");
        assert_eq!(
            errs,
            [
                "grants/yibao-enroll.toml: grant \"yibao-enroll-hukou\": dataset gongan.hukou is conditional (有条件共享): set conditions.case_ref_required = true, or say why this grant needs no case reference in conditions.case_ref_exempt_reason"
            ]
        );
        // Both: refused.
        let errs = with_edit(
            "grants/yibao-enroll.toml",
            reason,
            &format!("{reason}case_ref_required = true\n"),
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("either requires a case reference")),
            "{errs:?}"
        );
        // An empty reason is no reason.
        let errs = with_edit(
            "grants/yibao-enroll.toml",
            reason,
            "case_ref_exempt_reason = \" \"\n",
        );
        assert!(errs.iter().any(|e| e.contains("1 to 500")), "{errs:?}");
        // An unconditional dataset needs neither.
        let s = sample();
        let grant = &s.files["grants/jiaoyu-teacher.toml"];
        assert!(!grant.contains("case_ref"), "{grant}");
        assert!(validate(s).is_ok());
    }
}
