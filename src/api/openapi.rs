//! The OpenAPI 3.1 description served at `/openapi.json`.
//!
//! Paths come from the `#[utoipa::path]` attributes on the handlers, which the
//! routers register through `utoipa_axum::routes!`: a route cannot exist
//! without its description. The types below describe the JSON bodies the
//! handlers build; the schemathesis run in CI (`checks/schemathesis.sh`)
//! checks every response of the running gateway against them.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi, Ref, ResponseBuilder};
use utoipa::{Modify, ToSchema};

use crate::problem::ProblemType;

/// The tag of the operations routes, which need no token and are not audited.
const TAG_OPS: &str = "ops";

/// The document's fixed parts; paths are added by the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "tongban (通办) gateway",
        description = "Departments query each other's resident records under sharing policies. \
            Every request under /v1 is authenticated (bearer JWT, optionally a client certificate), \
            decided against the grants, minimized to the granted fields, rate limited, and written \
            to a tamper-evident audit log before its answer leaves. Every refusal is \
            application/problem+json with a stable `type` (/problems/<slug>, listed in docs/integrating.md); \
            its title and detail are in Chinese when Accept-Language prefers zh.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "records", description = "Department systems: the catalog, lookups, verification (数据核验) and batches"),
        (name = "audit", description = "Privacy officers (role privacy_officer of the operator department): the audit log"),
        (name = "residents", description = "Residents (a token of a resident issuer): their own record of use and their objections"),
        (name = "sharing", description = "The sharing workflow: consuming departments file requests, the data authority reviews them, owners' data stewards answer them"),
        (name = "admin", description = "Policy administrators (role policy_admin of the operator department): catalog and grants"),
        (name = "ops", description = "Operators: health, readiness, metrics and this description; not audited"),
    ),
    components(schemas(Problem)),
)]
#[derive(Debug)]
pub struct ApiDoc;

/// What every audited operation shares: its security and its refusals.
#[derive(Debug)]
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "A JWT from a configured issuer (ES256, RS256 or EdDSA), with claims \
                         iss, aud, sub, dept, roles (array), iat, nbf, exp.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "client_certificate",
            SecurityScheme::MutualTls {
                description: Some(
                    "A client certificate issued by the configured client CA. Optional or \
                     required depending on tls.client_auth; when presented, its SHA-256 \
                     fingerprint is recorded in the audit event."
                        .to_owned(),
                ),
                extensions: None,
                deprecated: None,
            },
        );
        name_symbolic_enums(components);
        for item in openapi.paths.paths.values_mut() {
            for op in operations(item) {
                let ops_route = op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == TAG_OPS));
                if ops_route {
                    continue;
                }
                op.security = Some(vec![
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("bearer", Vec::<String>::new())
                        .add("client_certificate", Vec::<String>::new()),
                ]);
                add_refusals(op);
                let records = op
                    .tags
                    .as_ref()
                    .is_some_and(|t| t.iter().any(|t| t == "records"));
                add_problem_types(op, records);
                add_response_headers(op);
            }
        }
        close_request_bodies(openapi);
    }
}

fn operations(item: &mut utoipa::openapi::PathItem) -> Vec<&mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

fn problem_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

/// The refusals any audited operation can give, whatever its own list says.
fn add_refusals(op: &mut Operation) {
    let common = [
        (
            "400",
            "The request is not valid (header, path, query or body); see `type`",
        ),
        (
            "401",
            "No valid bearer token (missing, malformed, forged, expired, wrong issuer or audience)",
        ),
        (
            "403",
            "Authenticated, but no grant or role allows this (deny by default)",
        ),
        (
            "429",
            "Over the department's rate limit or the grant's quota; see Retry-After",
        ),
        (
            "503",
            "The audit log cannot record the request, so no data leaves (audit-unavailable); or the data owner's system is unavailable (upstream-unavailable)",
        ),
        (
            "502",
            "The data owner's system answered something its catalog entry does not allow (upstream-invalid-answer)",
        ),
        (
            "504",
            "The data owner's system did not answer in time (upstream-timeout)",
        ),
        ("default", "Any other refusal, as problem+json"),
    ];
    for (status, description) in common {
        op.responses
            .responses
            .entry(status.to_owned())
            .or_insert_with(|| problem_response(description).into());
    }
}

/// `additionalProperties: false` on every JSON request body's schema: the
/// gateway refuses a body with a member it does not know (`invalid-body`),
/// so a generated client must not send one.
fn close_request_bodies(openapi: &mut OpenApi) {
    use utoipa::openapi::schema::AdditionalProperties;
    use utoipa::openapi::{RefOr, Schema};
    let mut names = std::collections::BTreeSet::new();
    for item in openapi.paths.paths.values_mut() {
        for op in operations(item) {
            let Some(RefOr::T(body)) = &op.request_body else {
                continue;
            };
            let Some(RefOr::T(content)) = body.content.get("application/json") else {
                continue;
            };
            if let Some(RefOr::Ref(r)) = &content.schema {
                if let Some(name) = r.ref_location.strip_prefix("#/components/schemas/") {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    let Some(components) = openapi.components.as_mut() else {
        return;
    };
    for name in names {
        if let Some(RefOr::T(Schema::Object(object))) = components.schemas.get_mut(&name) {
            object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        }
    }
}

/// Code-friendly names for the values of a string enum that are not
/// identifiers (the comparisons `>=` and `<=`): `x-enum-varnames`, which
/// client generators use for the enum's members (`AT_LEAST`, not `VALUE_2`).
fn name_symbolic_enums(components: &mut utoipa::openapi::Components) {
    use utoipa::openapi::{RefOr, Schema};
    for schema in components.schemas.values_mut() {
        let RefOr::T(Schema::Object(object)) = schema else {
            continue;
        };
        let Some(values) = &object.enum_values else {
            continue;
        };
        let texts: Vec<&str> = values.iter().filter_map(Value::as_str).collect();
        let symbolic = |t: &str| !t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if texts.len() != values.len() || !texts.iter().any(|t| symbolic(t)) {
            continue;
        }
        let names: Vec<String> = texts
            .iter()
            .map(|t| match *t {
                ">=" => "AT_LEAST".to_owned(),
                "<=" => "AT_MOST".to_owned(),
                ">" => "GREATER_THAN".to_owned(),
                "<" => "LESS_THAN".to_owned(),
                other => other
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect(),
            })
            .collect();
        object
            .extensions
            .get_or_insert_with(Default::default)
            .insert("x-enum-varnames".to_owned(), serde_json::json!(names));
    }
}

/// Where a problem type can come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    /// Any audited operation: authentication, the request's form, limits,
    /// stops, the audit log.
    Any,
    /// The department routes: catalog, lookup, verify, batch.
    Records,
    /// The staff routes: audit review and administration.
    Staff,
    /// The router's own answers (no such route, method not allowed).
    Router,
}

#[allow(clippy::too_many_lines)] // one arm per problem, as a table
fn family(t: ProblemType) -> Family {
    use ProblemType as T;
    match t {
        T::NoSuchRoute | T::MethodNotAllowed => Family::Router,
        T::PurposeRequired
        | T::InvalidPurpose
        | T::InvalidCaseRef
        | T::InvalidDatasetId
        | T::InvalidFieldList
        | T::InvalidCondition
        | T::PredicateNotGranted
        | T::VerifyBudgetExhausted
        | T::BatchTooLarge
        | T::IdempotencyKeyReused
        | T::OtherDepartmentsCase
        | T::IdempotencyKeyInFlight
        | T::UnknownDataset
        | T::UnknownField
        | T::CaseRefRequired
        | T::CaseRefFormat
        | T::DatasetNotShared
        | T::NoGrant
        | T::PurposeNotGranted
        | T::RoleNotGranted
        | T::OperationNotGranted
        | T::GrantNotInForce
        | T::FieldVerifyOnly
        | T::FieldNotGranted
        | T::FieldMaskedNotVerifiable
        | T::NoFieldsGranted
        | T::ResidentNotFound
        | T::ProviderFailed
        | T::UpstreamUnavailable
        | T::UpstreamTimeout
        | T::UpstreamInvalidAnswer => Family::Records,
        T::RoleRequired
        | T::InvalidDepartment
        | T::InvalidGrantId
        | T::AuditReadFailed
        | T::EventNotFound
        | T::FlagNotFound
        | T::DisclosureNotFound
        | T::ObjectionNotFound
        | T::ObjectionConflict
        | T::ObjectionNotStored
        | T::SharingRequestNotFound
        | T::SharingNotYours
        | T::SharingRequestState
        | T::InvalidSharingDecision
        | T::SharingNotStored
        | T::RenewedGrantChanged
        | T::DataObjectionNotFound
        | T::DataObjectionNotYours
        | T::DataObjectionAnswered
        | T::InvalidDataObjection
        | T::DataObjectionNotStored
        | T::ReviewNotStored
        | T::NotACluster
        | T::RetentionNotSet
        | T::DepartmentNotFound
        | T::CannotSuspendOperator
        | T::SuspensionNotStored
        | T::InvalidRevocation
        | T::InvalidReason
        | T::IdMismatch
        | T::GrantNotFound
        | T::RevokedTokenNotFound
        | T::NoChange
        | T::DatasetNotFound
        | T::VersionNotFound
        | T::PreconditionRequired
        | T::PreconditionFailed
        | T::InvalidPolicy
        | T::DatasetInUse
        | T::DatasetNotEmbedded
        | T::InvalidRecords
        | T::BackupFailed
        | T::BackupKeysRefused
        | T::PolicyWriteFailed
        | T::PolicyChangedElsewhere
        | T::HistoryReadFailed => Family::Staff,
        T::TokenMissing
        | T::TokenInvalid
        | T::TokenExpired
        | T::TokenRevoked
        | T::UnknownDepartment
        | T::IssuerOutOfScope
        | T::CertificateDepartmentMismatch
        | T::CertificateBindingMismatch
        | T::ClientCertificateRevoked
        | T::TokenKeysUnavailable
        | T::InvalidHeader
        | T::HeadersTooLarge
        | T::InvalidResidentId
        | T::InvalidQuery
        | T::InvalidPath
        | T::InvalidBody
        | T::UnsupportedMediaType
        | T::BodyTooLarge
        | T::RequestTimeout
        | T::RateLimited
        | T::UnauthenticatedRateLimited
        | T::DepartmentSuspended
        | T::AuditUnavailable
        | T::ClusterUnavailable => Family::Any,
    }
}

/// Lists, on each refusal status of an operation, the problem types it can
/// answer with (`x-problem-types`, and in the description): those of every
/// audited operation and those of its family (department or staff routes).
fn add_problem_types(op: &mut Operation, records: bool) {
    use utoipa::openapi::RefOr;
    let mine = if records {
        Family::Records
    } else {
        Family::Staff
    };
    let mut by_status: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for t in ProblemType::ALL {
        let f = family(*t);
        if f == Family::Any || f == mine {
            by_status
                .entry(t.status().as_u16().to_string())
                .or_default()
                .push(t.slug());
        }
    }
    for (status, slugs) in by_status {
        let entry = op
            .responses
            .responses
            .entry(status)
            .or_insert_with(|| problem_response("Refused; see `type`").into());
        if let RefOr::T(response) = entry {
            let list = slugs
                .iter()
                .map(|s| format!("`/problems/{s}`"))
                .collect::<Vec<_>>()
                .join(", ");
            response.description = format!(
                "{}. Types: {list}.",
                response.description.trim_end_matches('.')
            );
            let types: Vec<String> = slugs.iter().map(|s| format!("/problems/{s}")).collect();
            response
                .extensions
                .get_or_insert_with(Default::default)
                .insert("x-problem-types".to_owned(), serde_json::json!(types));
        }
    }
}

/// The headers an audited operation's answers carry: `X-Request-Id` and
/// `X-Audit-Seq` on every one, `WWW-Authenticate` on 401, `Retry-After` on
/// 429 and 503 (and on a records route's 409), `Preference-Applied` on a
/// department route's 200, `Idempotent-Replayed` on a verify's or batch's.
fn add_response_headers(op: &mut Operation) {
    use utoipa::openapi::{HeaderBuilder, ObjectBuilder, RefOr, Type};
    let header = |kind: Type, description: &str| -> RefOr<utoipa::openapi::Header> {
        RefOr::T(
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(kind)))
                .description(Some(description))
                .build(),
        )
    };
    let records = op
        .tags
        .as_ref()
        .is_some_and(|t| t.iter().any(|t| t == "records"));
    let keyed = matches!(op.operation_id.as_deref(), Some("verify" | "batch"));
    for (status, entry) in &mut op.responses.responses {
        let RefOr::T(response) = entry else {
            continue;
        };
        let headers = &mut response.headers;
        headers.insert(
            "X-Request-Id".into(),
            header(
                Type::String,
                "The request's id, as recorded in its audit event (also `request_id` in a problem)",
            ),
        );
        headers.insert(
            "X-Audit-Seq".into(),
            header(
                Type::Integer,
                "The sequence number of the audit event that records this answer or refusal",
            ),
        );
        match status.as_str() {
            "401" => {
                headers.insert(
                    "WWW-Authenticate".into(),
                    header(
                        Type::String,
                        "Bearer realm=\"tongban\", with error and error_description (RFC 6750)",
                    ),
                );
            }
            "409" if records => {
                headers.insert(
                    "Retry-After".into(),
                    header(Type::Integer, "Seconds to wait before sending the same request again (`idempotency-key-in-flight`)"),
                );
            }
            "429" | "503" => {
                headers.insert(
                    "Retry-After".into(),
                    header(Type::Integer, "Seconds to wait before trying again"),
                );
            }
            "200" if records => {
                headers.insert(
                    "Preference-Applied".into(),
                    header(Type::String, "`signed` when the answer carries a proof (asked with `Prefer: signed`, or required by the grant)"),
                );
                if keyed {
                    headers.insert(
                        "Idempotent-Replayed".into(),
                        header(Type::String, "`true` when the answer replays a request answered before under the same `Idempotency-Key` (asked and checked again, not charged again)"),
                    );
                }
            }
            _ => {}
        }
    }
}

/// An RFC 9457 problem: every refusal and error of the gateway.
#[derive(Debug, ToSchema)]
pub struct Problem {
    /// Stable identifier of the problem, `/problems/<slug>`; what clients match on.
    #[schema(rename = "type", example = "/problems/no-grant")]
    pub kind: String,
    /// Short human-readable summary.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What exactly was wrong, for a person; never record data.
    pub detail: String,
    /// The request's id (also in `X-Request-Id`).
    #[schema(nullable = false)]
    pub request_id: Option<String>,
    /// Sequence number of the audit event that records this refusal.
    #[schema(nullable = false)]
    pub audit_seq: Option<u64>,
}

pub use super::answer::{AuditRef, GrantRef, RecordAnswer};

/// A record value: text, number, boolean, or null when the owner holds none.
#[derive(Debug, ToSchema)]
#[schema(value_type = Value)]
pub struct FieldValue(pub Value);

/// A field as the catalog shows it to a consumer.
#[derive(Debug, ToSchema)]
pub struct CatalogField {
    /// Field name.
    pub name: String,
    /// Title (Chinese).
    pub title: String,
    /// Value type (`string`, `integer`, `number`, `boolean`, `date`).
    #[schema(rename = "type")]
    pub kind: String,
    /// Sensitivity (`public`, `personal`, `sensitive`).
    pub sensitivity: String,
    /// `plain`, `masked:<mask>` or `verify_only`.
    pub disclosure: String,
}

/// The grant of a catalog entry.
#[derive(Debug, ToSchema)]
pub struct CatalogGrant {
    /// Grant id.
    pub id: String,
    /// Grant version.
    pub version: u32,
    /// Title.
    pub title: String,
    /// Legal basis (法律依据).
    pub basis: String,
}

/// One dataset the caller may use, under one grant.
#[derive(Debug, ToSchema)]
pub struct CatalogEntry {
    /// Dataset id.
    pub dataset: String,
    /// Title.
    pub title: String,
    /// Owning department.
    pub owner: String,
    /// Sharing class (`unconditional`, `conditional`, `none`).
    pub class: String,
    /// The grant.
    pub grant: CatalogGrant,
    /// Purposes the grant allows.
    pub purposes: Vec<String>,
    /// Operations the grant allows (`lookup`, `verify`, `batch`).
    pub operations: Vec<String>,
    /// Roles that may use it.
    pub roles: Vec<String>,
    /// The grant's conditions (case reference, validity, quota, batch size).
    pub conditions: CatalogConditions,
    /// Whether today is within the grant's validity.
    pub in_force: bool,
    /// The fields, and how each is disclosed.
    pub fields: Vec<CatalogField>,
    /// What `verify` may ask of the `verify_only` fields: each condition
    /// exactly as listed (`field`, `op`, `value`); nothing else of them.
    pub verify_predicates: Vec<crate::policy::predicate::Condition>,
}

/// A grant's conditions, as the catalog shows them: what a query under it
/// must carry and how far it reaches. An absent member is no condition.
#[derive(Debug, ToSchema)]
pub struct CatalogConditions {
    /// A case reference (办件编号, `X-Case-Ref`) must be named on every query.
    pub case_ref_required: bool,
    /// On a conditional dataset (有条件共享), why the grant needs no case
    /// reference (a grant has this or `case_ref_required`).
    #[schema(nullable = false)]
    pub case_ref_exempt_reason: Option<String>,
    /// The form a case reference must have (a regular expression matched
    /// against the whole reference).
    #[schema(nullable = false)]
    pub case_ref_pattern: Option<String>,
    /// First day the grant is in force (inclusive, `YYYY-MM-DD`, the gateway's time zone).
    #[schema(nullable = false)]
    pub valid_from: Option<String>,
    /// Last day the grant is in force (inclusive).
    #[schema(nullable = false)]
    pub valid_until: Option<String>,
    /// The grant's rate quota, e.g. `120/min`.
    #[schema(nullable = false)]
    pub quota: Option<String>,
    /// The largest batch allowed.
    #[schema(nullable = false)]
    pub batch_limit: Option<u32>,
    /// Verify requests per resident and day.
    #[schema(nullable = false)]
    pub verify_budget_per_resident_day: Option<u32>,
    /// `required`: every answer under the grant is signed (absent: signed
    /// when asked with `Prefer: signed`).
    #[schema(nullable = false)]
    pub signed_answers: Option<SignedAnswersRequired>,
}

/// The one value `signed_answers` shows in the catalog.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum SignedAnswersRequired {
    /// Every answer is signed.
    Required,
}

/// `GET /v1/catalog`.
#[derive(Debug, ToSchema)]
pub struct CatalogAnswer {
    /// The caller's department.
    pub department: String,
    /// Version of the policy set.
    pub policy_version: String,
    /// What the caller may use.
    pub datasets: Vec<CatalogEntry>,
    /// The audit event.
    pub audit: AuditRef,
}

/// One audit event as officers see it. Residents appear as pseudonyms.
#[derive(Debug, ToSchema)]
pub struct AuditEvent {
    /// Sequence number (gap-free).
    pub seq: u64,
    /// When (RFC 3339, gateway calendar).
    pub time: String,
    /// The node that wrote it.
    pub node: String,
    /// The request's id.
    pub request_id: String,
    /// Kind (`query`, `audit_review`, `policy_change`, `system`, …).
    pub kind: String,
    /// Operation (`lookup`, `verify`, `batch`, `catalog`, `audit.search`, …).
    pub operation: String,
    /// Consumer department.
    #[schema(required = true)]
    pub consumer: Option<String>,
    /// The caller (`sub`).
    #[schema(required = true)]
    pub subject: Option<String>,
    /// The caller's roles.
    pub roles: Vec<String>,
    /// SHA-256 of the client certificate, hex.
    #[schema(required = true)]
    pub cert_fingerprint: Option<String>,
    /// Peer address.
    pub source: String,
    /// Dataset.
    #[schema(required = true)]
    pub dataset: Option<String>,
    /// Resident pseudonym (keyed hash), never the ID.
    #[schema(required = true)]
    pub resident: Option<String>,
    /// Purpose.
    #[schema(required = true)]
    pub purpose: Option<String>,
    /// Case reference.
    #[schema(required = true)]
    pub case_ref: Option<String>,
    /// Fields disclosed (or checked, for a verification).
    pub fields: Vec<String>,
    /// `allow`, `deny` or `error`.
    pub decision: String,
    /// Problem slug of a refusal.
    #[schema(required = true)]
    pub reason: Option<String>,
    /// The grant.
    #[schema(required = true)]
    pub grant: Option<GrantRef>,
    /// Policy version.
    #[schema(required = true)]
    pub policy_version: Option<String>,
    /// HTTP status answered.
    pub status: u16,
    /// Time in the gateway, µs.
    pub latency_us: u32,
    /// Operation-specific detail (filters, outcomes, policy changes); never a field value.
    #[schema(required = true)]
    pub detail: Option<String>,
    /// Hash of the previous event (hex).
    pub prev_hash: String,
    /// Hash of this event (hex).
    pub hash: String,
    /// SHA-256 (hex) of the signed answer issued with this disclosure.
    #[schema(required = true)]
    pub proof: Option<String>,
    /// Only in `GET /v1/audit/events/{seq}`: that request's own audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// `GET /v1/audit/events`: newest first.
#[derive(Debug, ToSchema)]
pub struct SearchAnswer {
    /// The page.
    pub events: Vec<AuditEvent>,
    /// Opaque cursor of the next (older) page; null at the end.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// With a `resident` or `pseudonym` filter: the resident's pseudonym, for
    /// a link (`pseudonym=`) that names no ID.
    pub pseudonym: Option<String>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A field named in a disclosure, with its title.
#[derive(Debug, ToSchema)]
pub struct DisclosedField {
    /// Field name.
    pub name: String,
    /// Title (Chinese, then the name).
    pub title: String,
}

/// One time a resident's data left the gateway.
#[derive(Debug, ToSchema)]
pub struct Disclosure {
    /// The gateway node whose audit chain holds the event.
    pub node: String,
    /// Audit sequence number (in that node's chain).
    pub seq: u64,
    /// When.
    pub time: String,
    /// Consumer department.
    pub consumer: String,
    /// Its name.
    pub consumer_name: String,
    /// The caller.
    pub subject: String,
    /// Dataset.
    pub dataset: String,
    /// Its title.
    pub dataset_title: String,
    /// `lookup` (the values were given), `verify` (only whether a
    /// condition holds was told: the fields are the ones checked, not
    /// given) or `batch`.
    pub operation: String,
    /// That kind of use in words, Chinese.
    pub use_zh: String,
    /// The same, English.
    pub use_en: String,
    /// Purpose.
    pub purpose: String,
    /// Its title (`[[purpose]]` of departments.toml), if it has one.
    pub purpose_title: Option<String>,
    /// Case reference.
    #[schema(required = true)]
    pub case_ref: Option<String>,
    /// `grant@version`.
    pub grant: String,
    /// The fields disclosed (for a verify: checked).
    pub fields: Vec<DisclosedField>,
    /// Whether a signed answer (proof) was issued with it.
    pub signed: bool,
    /// SHA-256 (hex) of that proof.
    #[schema(required = true)]
    pub proof: Option<String>,
}

/// `GET /v1/audit/residents/{resident_id}/disclosures` (JSON).
#[derive(Debug, ToSchema)]
pub struct DisclosureReport {
    /// The body named at the head of the report (`residents.report_issuer`,
    /// default the operator department's name).
    pub issued_by: String,
    /// The resident ID, masked.
    pub resident: String,
    /// When the report was made.
    pub generated_at: String,
    /// Number of disclosures.
    pub count: u64,
    /// Oldest first.
    pub disclosures: Vec<Disclosure>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/me/disclosures`.
#[derive(Debug, ToSchema)]
pub struct MyDisclosures {
    /// The resident ID, masked.
    pub resident: String,
    /// When the record was read.
    pub generated_at: String,
    /// Number of uses.
    pub count: u64,
    /// Newest first: `time`, `department` and `department_name`, `purpose`
    /// with the grant's `purpose_title` and legal `basis`, `case_ref`,
    /// `dataset_title`, `fields` (titles), `operation` with `use_zh` and
    /// `use_en` in words, `signed`; `clerk` only where the gateway is
    /// configured to name clerks; `node` and `seq` name the use in an
    /// objection.
    #[schema(value_type = Vec<Object>)]
    pub disclosures: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// An objection's body.
#[derive(Debug, ToSchema)]
pub struct ObjectionRequest {
    /// The node of the use objected to, as the record lists it (default: this node).
    pub node: Option<String>,
    /// The use's sequence number, as the record lists it.
    pub seq: u64,
    /// The resident's words (1 to 500 characters).
    pub text: String,
}

/// One of my objections.
#[derive(Debug, ToSchema)]
pub struct MyObjection {
    /// Its id.
    pub id: String,
    /// `open`, `answered` or `closed`.
    pub state: String,
    /// When it was lodged.
    pub filed_at: String,
    /// The last day an answer is due (working days on the gateway's calendar).
    pub due: String,
    /// Open past its due day.
    pub overdue: bool,
    /// The resident's words.
    pub text: String,
    /// The use objected to, as the record showed it.
    #[schema(value_type = Object)]
    pub disclosure: Value,
    /// The answer (`text`, `at`), once there is one.
    #[schema(value_type = Option<Object>)]
    pub reply: Option<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/me/objections`.
#[derive(Debug, ToSchema)]
pub struct MyObjections {
    /// How many.
    pub count: u64,
    /// Newest first, each as `POST /v1/me/objections` answers it.
    #[schema(value_type = Vec<Object>)]
    pub objections: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/audit/objections`.
#[derive(Debug, ToSchema)]
pub struct ObjectionQueue {
    /// How many.
    pub count: u64,
    /// Due soonest first: as the resident sees each, with the resident's
    /// pseudonym, the use's `node` and `seq`, and the answer's `by`.
    #[schema(value_type = Vec<Object>)]
    pub objections: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// An answer to an objection.
#[derive(Debug, ToSchema)]
pub struct ObjectionReply {
    /// The answer, for the resident (1 to 500 characters).
    pub reply: String,
    /// true: the objection is closed with this answer (default false: answered).
    pub close: Option<bool>,
}

/// An answered objection, as the queue lists it.
#[derive(Debug, ToSchema)]
pub struct ObjectionAnswered {
    /// Its id.
    pub id: String,
    /// `answered` or `closed`.
    pub state: String,
    /// The answer: `text`, `by`, `at`.
    #[schema(value_type = Object)]
    pub reply: Value,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A sharing request's body.
#[derive(Debug, ToSchema)]
pub struct SharingFile {
    /// The use case (应用场景) the data serves (1 to 500 characters).
    pub use_case: String,
    /// The grant asked for, as a grant file holds it, without `id`,
    /// `version` and `consumer` (the request names them): `title`,
    /// `roles`, `purposes`, `operations`, `basis`, `conditions`, and
    /// `access` naming one dataset.
    #[schema(value_type = Object)]
    pub grant: Value,
    /// For a renewal, the grant it renews: the caller's department's grant
    /// on this dataset alone. Approved, the renewal replaces that grant
    /// under the same id (with its new validity).
    pub renews: Option<String>,
}

/// A sharing request.
#[derive(Debug, ToSchema)]
pub struct SharingRequest {
    /// Its id.
    pub id: String,
    /// `filed`, `reviewed`, `approved`, `refused`, `returned`,
    /// `withdrawn` or `revoked`.
    pub state: String,
    /// For a renewal, the grant it renews.
    pub renews: Option<String>,
    /// For a renewal, that grant's version when it was filed (an approval
    /// is refused if it changed since).
    pub renews_version: Option<u32>,
    /// For a renewal, that grant as it now is (null once it ended).
    #[schema(value_type = Option<Object>)]
    pub renews_current: Option<Value>,
    /// The consuming department, the owner and the dataset.
    pub consumer: String,
    /// The department that owns the dataset.
    pub owner: String,
    /// The dataset.
    pub dataset: String,
    /// `conditional` (the owner answers) or `unconditional`.
    pub class: String,
    /// The use case.
    pub use_case: String,
    /// The grant asked for (with its provenance once approved).
    #[schema(value_type = Object)]
    pub grant: Value,
    /// When it was filed; the review's and the answer's due days; whether one is late.
    pub filed_at: String,
    /// The last day of the review.
    pub review_due: String,
    /// The last day of the owner's answer, once reviewed.
    pub answer_due: Option<String>,
    /// Past its due day for the step it waits for.
    pub overdue: bool,
    /// Every step: action, by, at, reason.
    #[schema(value_type = Vec<Object>)]
    pub history: Vec<Value>,
}

/// `GET /v1/sharing/requests`.
#[derive(Debug, ToSchema)]
pub struct SharingList {
    /// How many.
    pub count: u64,
    /// Newest first.
    pub requests: Vec<SharingRequest>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A revocation's reason.
#[derive(Debug, ToSchema)]
pub struct SharingRevoke {
    /// Why (1 to 500 characters; recorded in the audit log and in the request's history).
    pub reason: String,
}

/// A data objection's report.
#[derive(Debug, ToSchema)]
pub struct DataObjectionFile {
    /// The dataset.
    pub dataset: String,
    /// The field thought doubtful or wrong (one a grant in force shows the caller's role).
    pub field: String,
    /// The resident's 18-character ID number: sealed at rest, shown to the owner's data stewards only.
    pub resident_id: String,
    /// What seems wrong (1 to 1000 characters). Never a value of the record or an ID number.
    pub what: String,
    /// The node whose log holds the disclosure (default: this node): the
    /// `audit` reference of the lookup that gave the field.
    pub node: Option<String>,
    /// That disclosure's sequence number (`audit.seq` of the lookup's answer).
    pub seq: u64,
}

/// A data objection.
#[derive(Debug, ToSchema)]
pub struct DataObjection {
    /// Its id (`DO-YYYYMMDD-` and 16 hex digits).
    pub id: String,
    /// `open` or `answered`.
    pub state: String,
    /// The reporting department, and who reported it (`department/subject`).
    pub consumer: String,
    /// Who reported it.
    pub filed_by: String,
    /// The department that owns the dataset.
    pub owner: String,
    /// The dataset.
    pub dataset: String,
    /// The field.
    pub field: String,
    /// The resident ID masked (`110101********1234`).
    pub resident_id_masked: String,
    /// The resident ID, for the owner's data stewards only and while it is open (null otherwise).
    pub resident_id: Option<String>,
    /// The reporter's disclosure it concerns: its node and sequence number.
    pub node: String,
    /// Its sequence number.
    pub seq: u64,
    /// What seems wrong.
    pub what: String,
    /// When it was reported.
    pub filed_at: String,
    /// The last day of the owner's answer (working days on the calendar).
    pub due: String,
    /// Open past its due day.
    pub overdue: bool,
    /// The owner's answer: `outcome` (`corrected`, `confirmed`, `not_ours`), `note`, `by`, `at`.
    #[schema(value_type = Option<Object>)]
    pub answer: Option<Value>,
}

/// `GET /v1/objections`.
#[derive(Debug, ToSchema)]
pub struct DataObjectionList {
    /// How many.
    pub count: u64,
    /// Newest first.
    pub objections: Vec<DataObjection>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// The owner's answer to a data objection.
#[derive(Debug, ToSchema)]
pub struct DataObjectionAnswer {
    /// `corrected`, `confirmed` or `not_ours`.
    pub outcome: String,
    /// For the reporter (up to 500 characters; required with `not_ours`).
    pub note: Option<String>,
}

/// `GET /v1/sharing/directory`: the sharing directory (共享目录).
#[derive(Debug, ToSchema)]
pub struct SharingDirectory {
    /// Every dataset: `dataset`, `title`, `description`, `owner`,
    /// `owner_name`, `class` (`unconditional`, `conditional`, `none`) and
    /// `fields` (`name`, `title`, `type`, `sensitivity`).
    #[schema(value_type = Vec<Object>)]
    pub datasets: Vec<Value>,
    /// Every department: `id` and `name`.
    #[schema(value_type = Vec<Object>)]
    pub departments: Vec<Value>,
    /// Every purpose with a title: `id` and `title`.
    #[schema(value_type = Vec<Object>)]
    pub purposes: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A deny-list entry's removal.
#[derive(Debug, ToSchema)]
pub struct LiftRequest {
    /// Why it is lifted (optional; up to 500 characters; in the audit log).
    pub reason: Option<String>,
}

/// A withdrawal by the consuming department.
#[derive(Debug, ToSchema)]
pub struct SharingWithdraw {
    /// Why (optional; up to 500 characters; kept in the request's history).
    pub reason: Option<String>,
}

/// A decision on a sharing request.
#[derive(Debug, ToSchema)]
pub struct SharingDecision {
    /// `approve`, `refuse` or `return`.
    pub decision: String,
    /// Why (required for `refuse` and `return`; 1 to 500 characters).
    pub reason: Option<String>,
    /// The owner's approval of fewer fields than asked.
    pub fields: Option<Vec<String>>,
}

/// Verdict of a chain verification.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Verdict {
    /// Every event links and every checkpoint signature holds.
    Intact,
    /// See `broken` for the first bad link.
    Broken,
}

/// `POST /v1/audit/prune`.
#[derive(Debug, ToSchema)]
pub struct PruneAnswer {
    /// The chain's anchor before (0, or the last event pruned before).
    pub anchor_before: u64,
    /// The last event removed (the new anchor); null if none was.
    pub through: Option<u64>,
    /// Events removed (with `dry_run`: that would be).
    pub events: u64,
    /// What held the prune back at `through`: the retention period, not yet
    /// exported, not yet covered by a signed checkpoint, not yet copied to
    /// PostgreSQL.
    pub limited_by: String,
    /// Whether nothing was removed on purpose.
    pub dry_run: bool,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/audit/verify`.
#[derive(Debug, ToSchema)]
pub struct VerifyReport {
    /// The verdict.
    pub verdict: Verdict,
    /// Events checked.
    pub checked: u64,
    /// Sequence number the chain starts after (0, or the last pruned event).
    pub anchor_seq: u64,
    /// Last event.
    pub head_seq: u64,
    /// Its hash.
    pub head_hash: String,
    /// Signed checkpoints checked.
    pub checkpoints_checked: u64,
    /// Sequence number of the newest checkpoint checked.
    #[schema(required = true)]
    pub last_checkpoint: Option<u64>,
    /// The first broken link, if any: its seq and what is wrong.
    #[schema(required = true, value_type = Option<Object>)]
    pub broken: Option<Value>,
    /// The runs of events of one suite (a change of `audit.suite` starts a new one).
    pub epochs: Vec<EpochDoc>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A run of events hashed and signed with one suite.
#[derive(Debug, ToSchema)]
#[schema(as = Epoch)]
pub struct EpochDoc {
    /// `international` (SHA-256, Ed25519) or `gm` (SM3, SM2).
    pub suite: String,
    /// Its first event checked.
    pub first_seq: u64,
    /// Its last event checked.
    pub last_seq: u64,
}

/// Counts of one day.
#[derive(Debug, ToSchema)]
pub struct DayStats {
    /// All events.
    pub total: u64,
    /// By consumer department.
    pub by_consumer: BTreeMap<String, u64>,
    /// By dataset (`-` for none).
    pub by_dataset: BTreeMap<String, u64>,
    /// By decision.
    pub by_decision: BTreeMap<String, u64>,
    /// By purpose (`-` for none).
    pub by_purpose: BTreeMap<String, u64>,
    /// By node whose chain holds the events.
    pub by_node: BTreeMap<String, u64>,
    /// By the grant that decided.
    pub by_grant: BTreeMap<String, u64>,
    /// Distinct cases (department and case reference) named.
    pub cases: u64,
}

/// `GET /v1/audit/stats`.
#[derive(Debug, ToSchema)]
pub struct StatsAnswer {
    /// Start of the window.
    pub from: String,
    /// End of the window.
    pub to: String,
    /// Per day (gateway calendar).
    pub days: BTreeMap<String, DayStats>,
    /// Unusual patterns, each with the events that raised it, its stable
    /// `id` and its `review` mark (or null).
    #[schema(value_type = Vec<Object>)]
    pub flags: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A grant in the list.
#[derive(Debug, ToSchema)]
pub struct GrantSummary {
    /// Grant id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Consumer department.
    pub consumer: String,
    /// Version.
    pub version: u32,
    /// Policy file it lives in.
    pub file: String,
    /// Entity tag for `If-Match`.
    pub etag: String,
    /// Datasets it reaches.
    pub datasets: Vec<String>,
    /// Operations.
    pub operations: Vec<String>,
    /// Purposes.
    pub purposes: Vec<String>,
    /// Roles.
    pub roles: Vec<String>,
}

/// `GET /v1/admin/grants`.
#[derive(Debug, ToSchema)]
pub struct GrantList {
    /// Version of the policy set.
    pub policy_version: String,
    /// Every grant.
    pub grants: Vec<GrantSummary>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/admin/grants/{id}`: the grant as its policy file holds it.
#[derive(Debug, ToSchema)]
pub struct GrantDocument {
    /// The grant (the fields of a `[[grant]]` table of the policy files).
    #[schema(value_type = Object)]
    pub grant: Value,
    /// Entity tag for `If-Match`.
    pub etag: String,
    /// Policy file it lives in.
    pub file: String,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A dataset in the list.
#[derive(Debug, ToSchema)]
pub struct DatasetSummary {
    /// Dataset id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Owning department.
    pub owner: String,
    /// Sharing class.
    pub class: String,
    /// Entity tag for `If-Match`.
    pub etag: String,
    /// Number of fields.
    pub fields: u32,
}

/// `GET /v1/admin/datasets`.
#[derive(Debug, ToSchema)]
pub struct DatasetList {
    /// Version of the policy set.
    pub policy_version: String,
    /// Every dataset of the catalog.
    pub datasets: Vec<DatasetSummary>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/admin/datasets/{id}`.
#[derive(Debug, ToSchema)]
pub struct DatasetDocument {
    /// The catalog entry (the fields of a dataset file).
    #[schema(value_type = Object)]
    pub dataset: Value,
    /// Entity tag for `If-Match`.
    pub etag: String,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// The answer to a stored change (create, replace, delete, revert).
#[derive(Debug, ToSchema)]
pub struct ChangeAnswer {
    /// `grant` or `dataset`.
    pub kind: String,
    /// Its id.
    pub id: String,
    /// The new policy version.
    pub policy_version: String,
    /// Who gains and who loses access to which fields.
    #[schema(value_type = Vec<Object>)]
    pub access_changes: Vec<Value>,
    /// The stored grant (not for a delete).
    #[schema(value_type = Object, nullable = false, required = false)]
    pub grant: Option<Value>,
    /// The stored dataset (not for a delete).
    #[schema(value_type = Object, nullable = false, required = false)]
    pub dataset: Option<Value>,
    /// Its new entity tag (not for a delete).
    #[schema(nullable = false)]
    pub etag: Option<String>,
    /// For a revert: the version restored.
    #[schema(nullable = false)]
    pub reverted_to: Option<u32>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// One proposed change of a validation.
#[derive(Debug, ToSchema)]
pub struct ProposedChange {
    /// `put_grant`, `delete_grant`, `put_dataset` or `delete_dataset`.
    pub action: String,
    /// The grant, for `put_grant`.
    #[schema(value_type = Object, nullable = false, required = false)]
    pub grant: Option<Value>,
    /// The dataset, for `put_dataset`.
    #[schema(value_type = Object, nullable = false, required = false)]
    pub dataset: Option<Value>,
    /// The id, for a delete.
    #[schema(nullable = false)]
    pub id: Option<String>,
}

/// `POST /v1/admin/validate`.
#[derive(Debug, ToSchema)]
pub struct ValidateRequest {
    /// The changes, applied in order to a copy of the policy set.
    pub changes: Vec<ProposedChange>,
}

/// The answer of a validation: nothing is changed.
#[derive(Debug, ToSchema)]
pub struct ValidateAnswer {
    /// Whether the changes would load.
    pub valid: bool,
    /// What is wrong, per change.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<Value>,
    /// Who would gain and lose access.
    #[schema(value_type = Vec<Object>)]
    pub access_changes: Vec<Value>,
    /// Version the changed set would have.
    pub policy_version: String,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `POST /v1/admin/decide`: a request to explain.
#[derive(Debug, ToSchema)]
pub struct DecideRequest {
    /// Consumer department.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,31}$")]
    pub dept: String,
    /// The caller's roles.
    pub roles: Vec<String>,
    /// Dataset.
    #[schema(pattern = "^[a-z][a-z0-9_]{0,31}\\.[a-z][a-z0-9_]{0,63}$")]
    pub dataset: String,
    /// `lookup`, `verify` or `batch`.
    pub operation: String,
    /// Purpose code.
    pub purpose: String,
    /// Case reference.
    pub case_ref: Option<String>,
    /// Fields asked for.
    pub fields: Option<Vec<String>>,
    /// The day to decide for (YYYY-MM-DD); today by default.
    pub date: Option<String>,
}

/// The decision and why.
#[derive(Debug, ToSchema)]
pub struct DecideAnswer {
    /// `allow` or `deny`.
    pub decision: String,
    /// The day decided for.
    pub date: String,
    /// Policy version.
    pub policy_version: String,
    /// The allowing grant.
    #[schema(value_type = Object, nullable = false, required = false)]
    pub grant: Option<Value>,
    /// Fields that would be disclosed, with masks.
    #[schema(value_type = Vec<Object>, nullable = false, required = false)]
    pub fields: Option<Vec<Value>>,
    /// Problem slug of a denial.
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// What is missing.
    #[schema(nullable = false)]
    pub detail: Option<String>,
    /// The grant closest to allowing it.
    #[schema(required = false)]
    pub nearest_grant: Option<String>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /v1/admin/history`: newest first.
#[derive(Debug, ToSchema)]
pub struct HistoryAnswer {
    /// Changes, each with author, time, diff and access changes.
    #[schema(value_type = Vec<Object>)]
    pub changes: Vec<Value>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A token revocation: `jti`, or `sub` with an optional `issued_before`.
#[derive(Debug, ToSchema)]
pub struct RevokeRequest {
    /// One token's id.
    pub jti: Option<String>,
    /// A subject: every token of it issued before `issued_before`.
    pub sub: Option<String>,
    /// With `sub`: RFC 3339 or a day; default now.
    pub issued_before: Option<String>,
    /// When the entry is dropped (RFC 3339 or a day); default 7 days, at most a year.
    pub expires: Option<String>,
    /// Why (1 to 500 characters).
    pub reason: String,
}

/// A deny-list entry.
#[derive(Debug, ToSchema)]
pub struct RevokedToken {
    /// Its id on the list (`jti:…` or `sub:…`): what `DELETE /v1/admin/revoked-tokens/{id}` names.
    pub id: String,
    /// The token id.
    #[schema(required = true)]
    pub jti: Option<String>,
    /// The subject.
    #[schema(required = true)]
    pub sub: Option<String>,
    /// Tokens of `sub` issued before this are refused.
    #[schema(required = true)]
    pub issued_before: Option<String>,
    /// When the entry is dropped.
    pub expires: String,
    /// Why.
    pub reason: String,
    /// Who.
    pub by: String,
    /// When.
    pub at: String,
    /// This request's audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// `GET /v1/admin/revoked-tokens`.
#[derive(Debug, ToSchema)]
pub struct RevokedTokenList {
    /// The entries in force.
    pub entries: Vec<RevokedToken>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A review mark's note.
#[derive(Debug, ToSchema)]
pub struct ReviewRequest {
    /// What the reviewer found (1 to 500 characters; recorded in the audit log).
    pub note: String,
}

/// A flag marked reviewed.
#[derive(Debug, ToSchema)]
pub struct FlagReview {
    /// The flag's id.
    pub id: String,
    /// Who marked it (`department/subject`), when, and the note.
    #[schema(value_type = Object)]
    pub review: Value,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A suspension's reason.
#[derive(Debug, ToSchema)]
pub struct SuspendRequest {
    /// Why (1 to 500 characters; recorded in the audit log and shown to administrators).
    pub reason: String,
}

/// A suspension in force.
#[derive(Debug, ToSchema)]
pub struct SuspensionInfo {
    /// Why.
    pub reason: String,
    /// Who (`dept/subject`).
    pub by: String,
    /// Since when.
    pub since: String,
}

/// A department and whether it is suspended.
#[derive(Debug, ToSchema)]
pub struct DepartmentState {
    /// Department id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Whether its requests are refused.
    pub suspended: bool,
    /// The suspension, if any.
    #[schema(required = true)]
    pub suspension: Option<SuspensionInfo>,
    /// This request's audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// `GET /v1/audit/evaluation`: the evaluation (评估).
#[derive(Debug, ToSchema)]
pub struct EvaluationAnswer {
    /// The window's start.
    pub from: String,
    /// Its end.
    pub to: String,
    /// One row per month and consumer → owner pair.
    pub rows: Vec<EvaluationRow>,
    /// Whether the sharing workflow's figures (`grants_made`, `days_to_grant`,
    /// `objections_answered`, `days_to_answer`) could be read; false: they are
    /// left out (0 and null), the rest stands.
    pub workflow_figures: bool,
    /// This request's audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// One month of one consumer → owner pair.
#[derive(Debug, ToSchema)]
pub struct EvaluationRow {
    /// `YYYY-MM`, the gateway calendar.
    pub month: String,
    /// The consuming department.
    pub consumer: String,
    /// Its name.
    pub consumer_name: String,
    /// The department whose data it was.
    pub owner: String,
    /// Its name.
    pub owner_name: String,
    /// Distinct case references the consumer named on its disclosures of the owner's data.
    pub cases: u64,
    /// Distinct (case, dataset) pairs among lookups and batches that named a case:
    /// materials obtained through the exchange instead of from the resident.
    pub materials: u64,
    /// Allowed verify requests (replays not counted again): answers given instead of paper certificates.
    pub verify_answers: u64,
    /// Lookup and batch disclosures that named no case.
    pub without_case: u64,
    /// Every disclosure counted.
    pub disclosures: u64,
    /// Sharing requests approved into grants that month.
    pub grants_made: u64,
    /// Their mean working days from filing to approval (null without any).
    pub days_to_grant: Option<f64>,
    /// Data objections the owner answered that month.
    pub objections_answered: u64,
    /// Their mean working days from report to answer (null without any).
    pub days_to_answer: Option<f64>,
}

/// `GET /v1/cases`: everything obtained under one case (免提交清单).
#[derive(Debug, ToSchema)]
pub struct CaseMaterials {
    /// The case reference.
    pub case_ref: String,
    /// The department whose case it is.
    pub consumer: String,
    /// Its name.
    pub consumer_name: String,
    /// When the list was made.
    pub generated_at: String,
    /// How many materials.
    pub count: u64,
    /// Each disclosure under the case, oldest first.
    pub materials: Vec<CaseMaterial>,
    /// This request's audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// One disclosure under a case.
#[derive(Debug, ToSchema)]
pub struct CaseMaterial {
    /// When (the gateway's calendar).
    pub time: String,
    /// The department that holds the data.
    pub owner: String,
    /// Its name.
    pub owner_name: String,
    /// The dataset.
    pub dataset: String,
    /// Its title.
    pub dataset_title: Option<String>,
    /// The fields that left, with their titles.
    pub fields: Vec<FieldTitle>,
    /// Who asked (the token's subject).
    pub subject: String,
    /// The purpose.
    pub purpose: String,
    /// `lookup`, `verify`, `batch` or `replay`.
    pub operation: String,
    /// The grant that allowed it, `id@version`.
    pub grant: Option<String>,
    /// Whether a signed answer was issued.
    pub signed: bool,
    /// The signed answer's hash (hex), if one was.
    pub proof: Option<String>,
    /// The node whose chain holds the event.
    pub node: String,
    /// Its sequence number there.
    pub seq: u64,
}

/// A field and its title.
#[derive(Debug, ToSchema)]
pub struct FieldTitle {
    /// The field.
    pub name: String,
    /// `title name`, or the name.
    pub title: String,
}

/// An online import of records, in force.
#[derive(Debug, ToSchema)]
pub struct ImportAnswer {
    /// The dataset.
    pub dataset: String,
    /// `replace` (PUT: the body is the whole set) or `merge` (POST).
    pub mode: String,
    /// `jsonl` or `csv`.
    pub format: String,
    /// Rows read (every one good).
    pub rows: u64,
    /// Records held before.
    pub held_before: u64,
    /// Records held now.
    pub held_after: u64,
    /// Bytes of the body.
    pub bytes: u64,
    /// SHA-256 of the body, hex (also in the audit event).
    pub sha256: String,
    /// This request's audit event.
    #[schema(nullable = false)]
    pub audit: Option<AuditRef>,
}

/// `GET /v1/admin/departments`.
#[derive(Debug, ToSchema)]
pub struct DepartmentList {
    /// Every registered department.
    pub departments: Vec<DepartmentState>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// A node of the cluster, as it last reported itself.
#[derive(Debug, ToSchema)]
pub struct ClusterNode {
    /// Its id (`cluster.node_id`).
    pub node_id: String,
    /// The address it serves on.
    pub listen: String,
    /// `tongban <version>`.
    pub software: String,
    /// When its process started (RFC 3339, the gateway's offset).
    pub started_at: String,
    /// Its last heartbeat.
    pub last_heartbeat: String,
    /// Seconds since then, by PostgreSQL's clock.
    pub seconds_since_heartbeat: f64,
    /// Whether it reported within three of its heartbeat intervals.
    pub alive: bool,
    /// The policy version it enforces.
    pub policy_version: i64,
    /// Whether that is the newest version.
    pub policy_current: bool,
    /// Its audit chain's last durable event (at its last heartbeat).
    pub audit_head_seq: i64,
    /// How far that chain is copied to PostgreSQL.
    pub audit_shipped_seq: i64,
    /// Durable events not yet copied.
    pub audit_lag_events: i64,
}

/// `GET /v1/admin/cluster`.
#[derive(Debug, ToSchema)]
pub struct ClusterState {
    /// `cluster`, or `single` for a node without `[cluster]`.
    pub mode: String,
    /// The node that answered.
    pub node_id: String,
    /// The policy version in PostgreSQL this node enforces (null on a single node).
    #[schema(required = true)]
    pub policy_version: Option<i64>,
    /// The newest version in PostgreSQL (null on a single node).
    #[schema(required = true)]
    pub head_version: Option<i64>,
    /// Every node that registered, by id (empty on a single node).
    pub nodes: Vec<ClusterNode>,
    /// Cluster mode: the last emergency stop (suspension, resumption,
    /// revoked tokens) of the cluster's log this node applied.
    pub stops_applied: Option<i64>,
    /// Cluster mode: stops made on this node while PostgreSQL could not
    /// take them, kept until it can.
    pub stops_pending: Option<u64>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// One version of the cluster's policy set.
#[derive(Debug, ToSchema)]
pub struct ClusterVersion {
    /// The version.
    pub version: i64,
    /// When it was committed (PostgreSQL's clock).
    pub committed_at: String,
    /// The node it was committed through (`cli` for `tongban policy push`).
    pub node_id: String,
    /// Who committed it.
    pub author: String,
    /// What kind of change (`put`, `delete`, `revert`, `push`, …).
    pub action: String,
    /// What it changed, in a line.
    pub summary: String,
    /// Why, as its author said (`reason`, `--reason`), if they did.
    pub reason: Option<String>,
    /// The hash of its files.
    pub content_hash: String,
    /// The policy files it changed, added or removed against the version before.
    pub changed_files: Vec<String>,
}

/// `GET /v1/admin/cluster/versions`.
#[derive(Debug, ToSchema)]
pub struct ClusterVersions {
    /// The version this node enforces.
    pub policy_version: i64,
    /// Newest first.
    pub versions: Vec<ClusterVersion>,
    /// This request's audit event.
    pub audit: AuditRef,
}

/// `GET /healthz`.
#[derive(Debug, ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}

/// `GET /readyz`.
#[derive(Debug, ToSchema)]
pub struct Readiness {
    /// `ready` or `not_ready`: all that a caller without an operator
    /// staff token learns.
    pub status: String,
    /// `healthy` or `failed`.
    pub audit_writer: Option<String>,
    /// The data directory's disk: `free_mb`, `low_water_mb`, and `state`
    /// (`ok`, or `low`: unready before the disk is full).
    #[schema(value_type = Option<Object>)]
    pub disk: Option<Value>,
    /// Node id.
    pub node: Option<String>,
    /// Version of the policy set in force.
    pub policy_version: Option<String>,
    /// Datasets in the catalog.
    pub datasets: Option<u32>,
    /// Grants in force.
    pub grants: Option<u32>,
    /// The last policy reload.
    #[schema(value_type = Option<Object>)]
    pub policy_reload: Option<Value>,
    /// Per dataset: its provider (`embedded` or `http`) and, for an upstream,
    /// its state (`up`, `down`, `trial`), consecutive failures and last error.
    #[schema(value_type = Option<Object>)]
    pub providers: Option<Value>,
    /// Per issuer that publishes its keys (`jwks_url`, `jwks_file`,
    /// `discovery`): `issuer`, `source`, the key ids in force (`kids`),
    /// `age_secs` since the set was fetched, `usable` (false past
    /// `jwks_stale_max_secs`: its tokens get 503 `token-keys-unavailable`)
    /// and `last_error`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub token_keys: Option<Value>,
    /// Cluster mode: the node, the PostgreSQL policy version it enforces, and
    /// its audit shipping (`durable_seq`, `applied_seq`, `shipped_seq`, `lag_events`,
    /// `error`); null on a single node.
    #[schema(value_type = Option<Object>)]
    pub cluster: Option<Value>,
}

/// The document, with the paths of `paths` (from the routers).
pub fn document(paths: OpenApi) -> OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.merge(paths);
    Conventions.modify(&mut doc);
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc.servers = Some(vec![
        utoipa::openapi::ServerBuilder::new()
            .url("/")
            .description(Some(
                "This gateway: the address /openapi.json was fetched from (https://<gateway>)",
            ))
            .build(),
    ]);
    doc
}
