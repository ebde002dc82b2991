//! The policy files as they are written: the catalog (`policies/datasets/*.toml`),
//! the grants (`policies/grants/*.toml`) and the department register
//! (`policies/departments.toml`).
//!
//! These are plain serde types with `deny_unknown_fields`, so a misspelt key is
//! an error rather than a silently ignored condition. They hold what the file
//! says; [`super::load`] checks that it makes sense as a whole.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{DatasetId, DeptId, FieldName, GrantId, Purpose, Role};

/// `policies/departments.toml`: every department that may own or consume data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DepartmentsFile {
    /// The departments, in any order.
    #[serde(rename = "department", default)]
    pub departments: Vec<Department>,
    /// The purposes grants name, with their titles for people (optional:
    /// a purpose without one is shown by its code).
    #[serde(rename = "purpose", default, skip_serializing_if = "Vec::is_empty")]
    pub purposes: Vec<PurposeTitle>,
}

/// A purpose (用途) grants name, with its title.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeTitle {
    /// Its code, as `X-Purpose` carries it.
    pub id: String,
    /// Its title, for people (a resident reads it in their record).
    pub title: String,
}

/// A department: an owner and/or consumer of data.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Its id, as tokens carry it in the `dept` claim.
    pub id: DeptId,
    /// Its name, for people.
    pub name: String,
}

/// One file under `policies/datasets/`: a catalog entry (政务信息资源目录).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetSpec {
    /// `<owner>.<name>`.
    pub id: DatasetId,
    /// The department that owns and provides the data (谁主管谁提供).
    pub owner: DeptId,
    /// Its title, for people.
    pub title: String,
    /// Its sharing class.
    pub class: SharingClass,
    /// Optional free text.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Where the records come from: the embedded store (default) or the
    /// owner's own API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ProviderSpec>,
    /// The fields of a record; the resident ID is the key, not a field, unless listed.
    #[serde(rename = "field")]
    pub fields: Vec<FieldSpec>,
}

/// The provider of a dataset's records.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderSpec {
    /// Records imported into the gateway's own store (`tongban import`).
    Embedded,
    /// The owning department's REST API (see the upstream contract in docs/integrating.md),
    /// called over mutual TLS with the gateway's client certificate.
    Http {
        /// `https://host:port/path`: the contract's routes are under it.
        base_url: String,
        /// Longest wait for an answer, in milliseconds. Default 2000.
        #[serde(default = "default_upstream_timeout_ms")]
        timeout_ms: u64,
        /// Whether the upstream has the batch route; without it a batch is
        /// answered by single lookups with bounded concurrency. Default true.
        #[serde(default = "default_true")]
        batch: bool,
    },
}

fn default_upstream_timeout_ms() -> u64 {
    2000
}

fn default_true() -> bool {
    true
}

/// 共享类型: how a dataset may be shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SharingClass {
    /// 无条件共享: any department with a grant, no case reference needed by class.
    Unconditional,
    /// 有条件共享: shared under grants with conditions.
    Conditional,
    /// 不予共享: never shared; a grant on it is an error.
    None,
}

/// One field of a dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// Its name in records.
    pub name: FieldName,
    /// Its value type; records are checked against it.
    #[serde(rename = "type")]
    pub kind: FieldType,
    /// How sensitive it is.
    pub sensitivity: Sensitivity,
    /// Its title, for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
}

/// The value type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// A JSON string.
    String,
    /// A JSON integer.
    Integer,
    /// A JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
    /// A `YYYY-MM-DD` string.
    Date,
    /// An array of strings.
    StringList,
    /// An array of objects (e.g. the properties of 不动产登记).
    ObjectList,
}

/// Field sensitivity, from least to most protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    /// Public information.
    Public,
    /// Internal to government.
    Internal,
    /// Personal information (个人信息).
    Personal,
    /// Sensitive personal information (敏感个人信息, PIPL Art. 28): needs a case reference.
    Sensitive,
}

/// One file under `policies/grants/`: the grants of one consumer and purpose.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsFile {
    /// The grants in this file.
    #[serde(rename = "grant", default)]
    pub grants: Vec<GrantSpec>,
}

/// A sharing policy: who may use which fields of which datasets, for what.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// Unique across all grant files.
    pub id: GrantId,
    /// Raised on every change; recorded in each audit event the grant decides.
    #[serde(default = "one")]
    pub version: u32,
    /// A title for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub title: String,
    /// The consuming department.
    pub consumer: DeptId,
    /// The caller must hold at least one of these roles.
    pub roles: Vec<Role>,
    /// The purposes the data may be used for.
    pub purposes: Vec<Purpose>,
    /// The operations allowed.
    pub operations: Vec<Operation>,
    /// The statutory duty this sharing serves (PIPL Art. 34).
    pub basis: String,
    /// Conditions on every use.
    #[serde(default)]
    pub conditions: Conditions,
    /// What may be used of which dataset.
    pub access: Vec<AccessSpec>,
    /// Where the grant came from, when a sharing request (共享申请) made it:
    /// set by the sharing workflow only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<Provenance>,
}

/// How a sharing request became a grant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// The request.
    pub request: String,
    /// Who filed it (`department/subject`).
    pub filed_by: String,
    /// The data authority's reviewer (`department/subject`).
    pub reviewed_by: String,
    /// Who approved it: the owner's steward, or for unconditional data the
    /// data authority's reviewer (`department/subject`).
    pub approved_by: String,
    /// When it was approved (RFC 3339).
    pub approved_at: String,
    /// The use case the request named.
    pub use_case: String,
    /// For a renewal, the request the grant came from before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renews: Option<String>,
}

fn one() -> u32 {
    1
}

/// Conditions attached to a grant.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Conditions {
    /// A case reference (办件编号) must be named on every query.
    #[serde(default)]
    pub case_ref_required: bool,
    /// Why a grant on a conditional dataset (有条件共享) needs no case
    /// reference (a batch run that no single case stands behind, a counter
    /// service done before a case exists): a grant on a conditional
    /// dataset has `case_ref_required` or this, never neither.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref_exempt_reason: Option<String>,
    /// The form a case reference must have (a regular expression matched
    /// against the whole reference, e.g. `MZ-\\d{4}-\\d{6}` for 民政 case numbers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case_ref_pattern: Option<String>,
    /// First day the grant is in force (inclusive, gateway time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    /// Last day the grant is in force (inclusive, gateway time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<String>,
    /// A rate quota for the grant as a whole, e.g. `"120/min"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<String>,
    /// The largest batch allowed, where `batch` is granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_limit: Option<u32>,
    /// Verify requests under this grant per resident and day (the gateway's
    /// time zone). Default 5; past it, 429 `verify-budget-exhausted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_budget_per_resident_day: Option<u32>,
    /// `required`: every answer under this grant is signed (a proof the
    /// consumer keeps in its case file), asked for or not. Default `optional`:
    /// signed when the caller sends `Prefer: signed`.
    #[serde(default, skip_serializing_if = "SignedAnswers::is_optional")]
    pub signed_answers: SignedAnswers,
}

/// Whether a grant's answers are signed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignedAnswers {
    /// When the caller asks (`Prefer: signed`).
    #[default]
    Optional,
    /// Always.
    Required,
}

impl SignedAnswers {
    /// The default.
    pub fn is_optional(&self) -> bool {
        *self == Self::Optional
    }
}

/// What a grant allows of one dataset.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AccessSpec {
    /// The dataset.
    pub dataset: DatasetId,
    /// Fields disclosed as they are.
    #[serde(default)]
    pub fields: Vec<FieldName>,
    /// Fields disclosed only in masked form, with the mask to apply.
    #[serde(default)]
    pub masked: BTreeMap<FieldName, Mask>,
    /// Fields that may only be checked with `verify`, never disclosed.
    #[serde(default)]
    pub verify_only: Vec<FieldName>,
    /// What `verify` may ask of the verify-only fields: each condition
    /// exactly as named here (field, comparison, and the threshold or the
    /// set of values), e.g. `{ field = "contribution_base", op = ">=",
    /// value = 3000 }` for the 低保 income test. Nothing else may be asked of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_predicates: Vec<super::predicate::Condition>,
}

/// An operation on a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Read one resident's record.
    Lookup,
    /// Answer yes/no to conditions on fields without disclosing them (数据核验).
    Verify,
    /// Read many residents' records at once.
    Batch,
}

impl Operation {
    /// The name used in files, events and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Lookup => "lookup",
            Self::Verify => "verify",
            Self::Batch => "batch",
        }
    }
}

/// A mask applied to a field before it leaves (GB/T 35273 practice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// `110101********1234`: first 6 and last 4 characters of an ID number.
    IdNumber,
    /// `138****5678`: first 3 and last 4 digits of a mobile number.
    Mobile,
    /// `张*`, `欧阳*`: the surname only.
    Name,
    /// The address cut to the district (区/县).
    Address,
    /// A date cut to its year.
    Year,
    /// The value replaced by `***`.
    Redact,
}

impl Mask {
    /// Whether the mask can be applied to a field of this type.
    pub fn applies_to(self, kind: FieldType) -> bool {
        match self {
            Self::IdNumber | Self::Mobile | Self::Name | Self::Address => kind == FieldType::String,
            Self::Year => kind == FieldType::Date,
            Self::Redact => true,
        }
    }
}
