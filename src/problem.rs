//! Every problem the gateway answers, in one place.
//!
//! [`ProblemType`] is the table of problem types: the stable slug (the end of
//! `type`, `/problems/<slug>`), the HTTP status and the title in English and
//! Chinese. [`Problem`] is one occurrence: its type and the typed parameters
//! its detail is built from, in either language. Nothing outside this file
//! writes a slug, a title or a detail sentence; docs/integrating.md's table of
//! problem types is checked against [`ProblemType::ALL`].

use axum::http::StatusCode;

use crate::domain::InvalidId;
use crate::pipeline::authn::AuthError;
use crate::pipeline::verify::ConditionError;
use crate::policy::decide::{Denial, DenyDetail, DenyReason};

/// The language a problem is told in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Chinese (简体中文).
    Zh,
}

impl Lang {
    /// The language an `Accept-Language` header prefers: Chinese when a
    /// `zh` range has a higher weight than every `en` range (the first of
    /// equals wins), English otherwise, and without the header.
    pub fn negotiate(accept_language: Option<&str>) -> Self {
        let mut best = (Self::En, 0.0_f32);
        for range in accept_language.unwrap_or("").split(',') {
            let mut parts = range.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|p| p.trim().strip_prefix("q=")?.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = match tag.split('-').next() {
                Some("zh") => Self::Zh,
                Some("en") => Self::En,
                _ => continue,
            };
            if q > best.1 {
                best = (lang, q);
            }
        }
        best.0
    }

    /// The `Content-Language` of an answer told in it.
    pub fn tag(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Zh => "zh",
        }
    }
}

macro_rules! problem_types {
    ($($variant:ident $slug:literal $status:ident $en:literal $zh:literal;)*) => {
        /// A problem type: its slug, status and titles.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ProblemType {
            $(#[doc = $en] $variant,)*
        }

        impl ProblemType {
            /// Every problem type, in the order of the table.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The stable slug: `type` is `/problems/<slug>`.
            pub const fn slug(self) -> &'static str {
                match self { $(Self::$variant => $slug,)* }
            }

            /// The HTTP status it is answered with.
            pub const fn status(self) -> StatusCode {
                match self { $(Self::$variant => StatusCode::$status,)* }
            }

            /// The short, fixed summary.
            pub const fn title(self, lang: Lang) -> &'static str {
                match lang {
                    Lang::En => match self { $(Self::$variant => $en,)* },
                    Lang::Zh => match self { $(Self::$variant => $zh,)* },
                }
            }
        }
    };
}

problem_types! {
    // Authentication and the caller's identity.
    TokenMissing "token-missing" UNAUTHORIZED "Authentication required" "需要身份认证";
    TokenInvalid "token-invalid" UNAUTHORIZED "The token was refused" "令牌未被接受";
    TokenExpired "token-expired" UNAUTHORIZED "The token has expired" "令牌已过期";
    TokenRevoked "token-revoked" UNAUTHORIZED "The token has been revoked" "令牌已被吊销";
    UnknownDepartment "unknown-department" UNAUTHORIZED "The token's department is not registered" "令牌所属部门未登记";
    IssuerOutOfScope "issuer-out-of-scope" UNAUTHORIZED "The token's issuer may not vouch for this" "令牌签发方无权为此作证";
    CertificateDepartmentMismatch "certificate-department-mismatch" UNAUTHORIZED "The client certificate names another department" "客户端证书属于另一部门";
    CertificateBindingMismatch "certificate-binding-mismatch" UNAUTHORIZED "The token is bound to another client certificate" "令牌绑定的是另一张客户端证书";
    ClientCertificateRevoked "client-certificate-revoked" UNAUTHORIZED "The client certificate is no longer trusted" "客户端证书已不再受信任";
    TokenKeysUnavailable "token-keys-unavailable" SERVICE_UNAVAILABLE "The token issuer's keys cannot be fetched" "无法获取令牌签发方的密钥";
    // The request's form.
    InvalidHeader "invalid-header" BAD_REQUEST "A request header is missing or malformed" "请求头缺失或格式错误";
    HeadersTooLarge "headers-too-large" REQUEST_HEADER_FIELDS_TOO_LARGE "The request headers are too large" "请求头过大";
    PurposeRequired "purpose-required" BAD_REQUEST "A purpose is required" "必须说明用途";
    InvalidPurpose "invalid-purpose" BAD_REQUEST "The purpose code is not valid" "用途代码无效";
    InvalidCaseRef "invalid-case-ref" BAD_REQUEST "The case reference is not valid" "办件编号无效";
    InvalidDatasetId "invalid-dataset-id" BAD_REQUEST "The dataset id is not valid" "数据集标识无效";
    InvalidResidentId "invalid-resident-id" BAD_REQUEST "The resident ID number is not valid" "居民身份证号码无效";
    InvalidFieldList "invalid-field-list" BAD_REQUEST "The field list is not valid" "字段列表无效";
    InvalidDepartment "invalid-department" BAD_REQUEST "The department id is not valid" "部门标识无效";
    InvalidGrantId "invalid-grant-id" BAD_REQUEST "The grant id is not valid" "授权标识无效";
    InvalidQuery "invalid-query" BAD_REQUEST "The query string is not valid" "查询参数无效";
    InvalidPath "invalid-path" BAD_REQUEST "The path is not valid" "请求路径无效";
    InvalidBody "invalid-body" BAD_REQUEST "The request body is not valid" "请求体无效";
    UnsupportedMediaType "unsupported-media-type" UNSUPPORTED_MEDIA_TYPE "Unsupported media type" "不支持的媒体类型";
    BodyTooLarge "body-too-large" PAYLOAD_TOO_LARGE "The request body is too large" "请求体过大";
    RequestTimeout "request-timeout" REQUEST_TIMEOUT "The request body took too long" "请求体传输超时";
    NoSuchRoute "no-such-route" NOT_FOUND "No such route" "没有此路由";
    MethodNotAllowed "method-not-allowed" METHOD_NOT_ALLOWED "Method not allowed" "不允许此方法";
    // Verify and batch.
    InvalidCondition "invalid-condition" BAD_REQUEST "The conditions are not valid" "核验条件无效";
    PredicateNotGranted "predicate-not-granted" FORBIDDEN "The grant does not allow this question" "授权不允许此核验问题";
    VerifyBudgetExhausted "verify-budget-exhausted" TOO_MANY_REQUESTS "The day's verifications of this resident are used up" "今日对该居民的核验次数已用完";
    BatchTooLarge "batch-too-large" BAD_REQUEST "The batch is too large" "批量请求过大";
    IdempotencyKeyReused "idempotency-key-reused" UNPROCESSABLE_ENTITY "The idempotency key was used for another request" "幂等键已用于另一请求";
    OtherDepartmentsCase "other-departments-case" FORBIDDEN "Another department's case" "其他部门的办件";
    IdempotencyKeyInFlight "idempotency-key-in-flight" CONFLICT "The request with this idempotency key is still being answered" "使用此幂等键的请求仍在处理中";
    // The decision.
    UnknownDataset "unknown-dataset" NOT_FOUND "No such dataset" "没有此数据集";
    UnknownField "unknown-field" BAD_REQUEST "No such field" "没有此字段";
    CaseRefRequired "case-ref-required" BAD_REQUEST "A case reference is required" "必须提供办件编号";
    CaseRefFormat "case-ref-format" BAD_REQUEST "The case reference has the wrong form" "办件编号格式不符";
    DatasetNotShared "dataset-not-shared" FORBIDDEN "The dataset is not shared" "该数据集不予共享";
    NoGrant "no-grant" FORBIDDEN "No grant allows this" "没有授权允许此访问";
    PurposeNotGranted "purpose-not-granted" FORBIDDEN "The purpose is not granted" "此用途未获授权";
    RoleNotGranted "role-not-granted" FORBIDDEN "Your roles are not granted this" "您的角色未获此授权";
    OperationNotGranted "operation-not-granted" FORBIDDEN "The operation is not granted" "此操作未获授权";
    GrantNotInForce "grant-not-in-force" FORBIDDEN "The grant is not in force" "授权不在有效期内";
    FieldVerifyOnly "field-verify-only" FORBIDDEN "The field may only be verified" "该字段仅可核验";
    FieldNotGranted "field-not-granted" FORBIDDEN "The field is not granted" "该字段未获授权";
    FieldMaskedNotVerifiable "field-masked-not-verifiable" FORBIDDEN "A masked field cannot be verified" "脱敏字段不可核验";
    NoFieldsGranted "no-fields-granted" FORBIDDEN "No field may be disclosed" "没有可提供的字段";
    ResidentNotFound "resident-not-found" NOT_FOUND "No record of this resident" "没有该居民的记录";
    // Limits and stops.
    RateLimited "rate-limited" TOO_MANY_REQUESTS "Rate limit exceeded" "超过频率限制";
    UnauthenticatedRateLimited "unauthenticated-rate-limited" TOO_MANY_REQUESTS "Too many unauthenticated requests" "未认证请求过多";
    DepartmentSuspended "department-suspended" FORBIDDEN "The department is suspended" "该部门已被暂停";
    RoleRequired "role-required" FORBIDDEN "This route needs another role" "此路由需要其他角色";
    // The owners' systems.
    ProviderFailed "provider-failed" BAD_GATEWAY "The data provider failed" "数据提供方出错";
    UpstreamUnavailable "upstream-unavailable" SERVICE_UNAVAILABLE "The owner's system is unavailable" "数据所有部门的系统不可用";
    UpstreamTimeout "upstream-timeout" GATEWAY_TIMEOUT "The owner's system did not answer in time" "数据所有部门的系统未及时应答";
    UpstreamInvalidAnswer "upstream-invalid-answer" BAD_GATEWAY "The owner's system answered invalidly" "数据所有部门的系统应答无效";
    // The audit log.
    AuditUnavailable "audit-unavailable" SERVICE_UNAVAILABLE "The audit log cannot be written" "审计日志无法写入";
    AuditReadFailed "audit-read-failed" INTERNAL_SERVER_ERROR "The audit log could not be read" "审计日志无法读取";
    ClusterUnavailable "cluster-unavailable" SERVICE_UNAVAILABLE "The cluster's shared store cannot be reached" "集群共享存储无法访问";
    EventNotFound "event-not-found" NOT_FOUND "No such audit event" "没有此审计事件";
    FlagNotFound "flag-not-found" NOT_FOUND "No such anomaly flag" "没有此异常标记";
    DisclosureNotFound "disclosure-not-found" NOT_FOUND "No such use of your data" "没有此项数据使用记录";
    ObjectionNotFound "objection-not-found" NOT_FOUND "No such objection" "没有此异议";
    ObjectionConflict "objection-conflict" CONFLICT "The objection cannot be taken as it stands" "该异议目前无法受理";
    ObjectionNotStored "objection-not-stored" INTERNAL_SERVER_ERROR "The objection could not be stored" "异议无法保存";
    ReviewNotStored "review-not-stored" INTERNAL_SERVER_ERROR "The review mark could not be stored" "复核标记无法保存";
    SharingRequestNotFound "sharing-request-not-found" NOT_FOUND "No such sharing request" "没有此共享申请";
    SharingNotYours "sharing-not-yours" FORBIDDEN "This step of the sharing request is not yours" "该共享申请的这一步不由您办理";
    SharingRequestState "sharing-request-state" CONFLICT "The sharing request is not waiting for this step" "该共享申请不在此环节";
    InvalidSharingDecision "invalid-sharing-decision" BAD_REQUEST "The decision is not valid" "办理结果无效";
    SharingNotStored "sharing-not-stored" INTERNAL_SERVER_ERROR "The sharing request could not be stored" "共享申请无法保存";
    RevokedTokenNotFound "revoked-token-not-found" NOT_FOUND "No such deny-list entry in force" "拒绝名单中没有此条目";
    NoChange "no-change" CONFLICT "The save changes nothing" "保存的内容没有任何变化";
    RenewedGrantChanged "renewed-grant-changed" CONFLICT "The grant this request renews has changed or ended" "本申请续期的授权已变更或终止";
    DataObjectionNotFound "data-objection-not-found" NOT_FOUND "No such data objection" "没有此数据疑义";
    DataObjectionNotYours "data-objection-not-yours" FORBIDDEN "This data objection is not yours to report or answer" "该数据疑义不由您提出或答复";
    DataObjectionAnswered "data-objection-answered" CONFLICT "The data objection is answered already" "该数据疑义已答复";
    InvalidDataObjection "invalid-data-objection" BAD_REQUEST "The data objection is not valid" "数据疑义无效";
    DataObjectionNotStored "data-objection-not-stored" INTERNAL_SERVER_ERROR "The data objection could not be stored" "数据疑义无法保存";
    // Administration.
    NotACluster "not-a-cluster" CONFLICT "This gateway is a single node" "此网关为单节点";
    RetentionNotSet "retention-not-set" CONFLICT "No retention period is configured" "未配置保留期限";
    DepartmentNotFound "department-not-found" NOT_FOUND "No such department" "没有此部门";
    CannotSuspendOperator "cannot-suspend-operator" CONFLICT "The operator department cannot be suspended" "运营部门不能被暂停";
    SuspensionNotStored "suspension-not-stored" INTERNAL_SERVER_ERROR "The change could not be stored" "变更无法保存";
    InvalidRevocation "invalid-revocation" BAD_REQUEST "The revocation is not valid" "吊销请求无效";
    InvalidReason "invalid-reason" BAD_REQUEST "The reason is not valid" "理由无效";
    IdMismatch "id-mismatch" BAD_REQUEST "The id in the body is not the id in the path" "请求体中的标识与路径不符";
    GrantNotFound "grant-not-found" NOT_FOUND "No such grant" "没有此授权";
    DatasetNotFound "dataset-not-found" NOT_FOUND "No such policy entry" "没有此策略条目";
    VersionNotFound "version-not-found" NOT_FOUND "No such version" "没有此版本";
    PreconditionRequired "precondition-required" PRECONDITION_REQUIRED "If-Match is required" "必须发送 If-Match";
    PreconditionFailed "precondition-failed" PRECONDITION_FAILED "The entry is not as the request expects" "条目状态与请求的前提不符";
    InvalidPolicy "invalid-policy" UNPROCESSABLE_ENTITY "The change would make the policy set invalid" "此变更会使策略集无效";
    DatasetInUse "dataset-in-use" CONFLICT "Grants still use this dataset" "仍有授权使用此数据集";
    DatasetNotEmbedded "dataset-not-embedded" CONFLICT "The dataset is answered by its owner's own system" "该数据集由数据所有部门的系统提供";
    InvalidRecords "invalid-records" UNPROCESSABLE_ENTITY "The records are not valid" "记录数据无效";
    BackupFailed "backup-failed" INTERNAL_SERVER_ERROR "The backup could not be written" "无法写出备份";
    BackupKeysRefused "backup-keys-refused" FORBIDDEN "This gateway gives no keys out through its API" "本网关不通过接口提供密钥";
    PolicyWriteFailed "policy-write-failed" INTERNAL_SERVER_ERROR "The change could not be written" "变更无法写入";
    PolicyChangedElsewhere "policy-changed-elsewhere" CONFLICT "The policy set changed on another node" "策略集已在另一节点变更";
    HistoryReadFailed "history-read-failed" INTERNAL_SERVER_ERROR "The history could not be read" "变更历史无法读取";
}

impl ProblemType {
    /// The problem type of a slug, if the gateway has one.
    pub fn from_slug(slug: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|t| t.slug() == slug)
    }
}

impl From<DenyReason> for ProblemType {
    fn from(reason: DenyReason) -> Self {
        match reason {
            DenyReason::UnknownDataset => Self::UnknownDataset,
            DenyReason::DatasetNotShared => Self::DatasetNotShared,
            DenyReason::UnknownField => Self::UnknownField,
            DenyReason::NoGrant => Self::NoGrant,
            DenyReason::PurposeNotGranted => Self::PurposeNotGranted,
            DenyReason::RoleNotGranted => Self::RoleNotGranted,
            DenyReason::OperationNotGranted => Self::OperationNotGranted,
            DenyReason::GrantNotInForce => Self::GrantNotInForce,
            DenyReason::FieldVerifyOnly => Self::FieldVerifyOnly,
            DenyReason::FieldNotGranted => Self::FieldNotGranted,
            DenyReason::NoFieldsGranted => Self::NoFieldsGranted,
            DenyReason::FieldMaskedNotVerifiable => Self::FieldMaskedNotVerifiable,
            DenyReason::CaseRefRequired => Self::CaseRefRequired,
            DenyReason::CaseRefFormat => Self::CaseRefFormat,
        }
    }
}

/// Which identifier a request carried in a malformed form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdInput {
    /// A resident ID number, in the path or a batch.
    Resident,
    /// A dataset id in the path.
    Dataset,
    /// `X-Purpose`.
    Purpose,
    /// `X-Case-Ref`.
    CaseRef,
    /// `?fields=`.
    FieldList,
    /// A department id in the path.
    Department,
    /// A grant id in the path.
    Grant,
}

/// What is wrong with a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderFault {
    /// Sent more than once.
    Repeated,
    /// Not UTF-8 text.
    NotText,
    /// An `Idempotency-Key` that is not 1 to `max` visible ASCII characters.
    IdempotencyKey {
        /// The longest key.
        max: usize,
    },
}

/// What is wrong with one parameter of a query string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueryFault {
    /// The query string does not parse (the parser's own words).
    Unreadable(String),
    /// A parameter holds a value that is not one of these.
    Expected {
        /// The parameter.
        param: &'static str,
        /// The values it takes.
        values: &'static [&'static str],
    },
    /// A time parameter does not parse.
    Time {
        /// The parameter.
        param: &'static str,
        /// Why.
        reason: String,
    },
    /// A cursor this gateway did not hand out.
    Cursor {
        /// Whether the search was cluster-wide.
        cluster: bool,
    },
    /// `limit` outside 1 to 1000.
    Limit,
    /// `from` after `to`.
    FromAfterTo,
    /// An export of another node's log from this node.
    OtherNode {
        /// This node's id.
        this_node: String,
    },
}

/// What is wrong with a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathFault {
    /// The path does not parse (the router's own words).
    Unreadable(String),
    /// An audit sequence number that is not a positive integer.
    Sequence,
}

/// What is wrong with a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BodyFault {
    /// The body could not be read (the server's own words).
    Unreadable(String),
    /// Not UTF-8.
    NotUtf8,
    /// Not JSON of the expected shape (the parser's words).
    Json(String),
    /// Not TOML of the expected shape (the parser's words).
    Toml(String),
    /// A date that is not `YYYY-MM-DD`.
    Date,
}

/// Whose batch limit a batch is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchLimit {
    /// The grant's `batch_limit`.
    Grant(String),
    /// The gateway's `limits.max_batch_ids`.
    Gateway,
}

/// Why a step of the sharing workflow is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharingFault {
    /// The caller may not take this step.
    NotYours {
        /// Who may.
        what: String,
    },
    /// The request is in another state.
    NotWaiting {
        /// The request.
        id: String,
        /// Its state.
        state: String,
    },
    /// Not approve, refuse or return.
    UnknownDecision {
        /// What was sent.
        decision: String,
    },
    /// An approval naming a field not asked for.
    MoreThanAsked {
        /// The field.
        field: String,
    },
    /// A refusal or return without a reason.
    ReasonRequired {
        /// `refuse` or `return`.
        decision: String,
    },
    /// A 不予共享 dataset asked for.
    NotToBeShared {
        /// The dataset.
        dataset: String,
    },
    /// A renewal whose grant ended or changed since it was filed.
    RenewsGone {
        /// The grant.
        grant: String,
        /// Ended (revoked or removed), or changed (its version).
        changed: Option<u32>,
    },
}

impl SharingFault {
    /// Its problem type.
    pub fn kind(&self) -> ProblemType {
        match self {
            Self::NotYours { .. } => ProblemType::SharingNotYours,
            Self::NotWaiting { .. } => ProblemType::SharingRequestState,
            Self::RenewsGone { .. } => ProblemType::RenewedGrantChanged,
            Self::UnknownDecision { .. } | Self::MoreThanAsked { .. } => {
                ProblemType::InvalidSharingDecision
            }
            Self::ReasonRequired { .. } => ProblemType::InvalidReason,
            Self::NotToBeShared { .. } => ProblemType::DatasetNotShared,
        }
    }
}

/// Why an objection cannot be lodged or answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectionFault {
    /// One about the same use is still open.
    AlreadyOpen {
        /// Its id.
        id: String,
    },
    /// The resident has this many open.
    TooMany {
        /// The most open at once.
        max: usize,
    },
    /// It is closed: no more answers.
    Closed {
        /// Its id.
        id: String,
    },
}

/// Which limit a request is over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limit {
    /// The department's rate limit.
    Department {
        /// The department.
        dept: String,
        /// The limit as configured ("6000/min").
        spec: String,
    },
    /// A grant's quota, for one request.
    Grant {
        /// The grant.
        grant: String,
        /// The quota as configured.
        spec: String,
    },
    /// A resident's own limit on `/v1/me/…`.
    Resident {
        /// The limit as configured ("30/min").
        spec: String,
    },
    /// A grant's quota, for a batch of `n`.
    GrantBatch {
        /// The grant.
        grant: String,
        /// The quota as configured.
        spec: String,
        /// The residents in the batch.
        n: u32,
    },
}

/// Which cluster-wide read PostgreSQL could not serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterRead {
    /// An audit search.
    Search,
    /// Another node's event.
    OtherNodesEvent,
    /// A disclosure report.
    DisclosureReport,
    /// An export of the cluster's log.
    Export,
    /// The statistics.
    Statistics,
    /// An idempotency key, honoured on every node.
    IdempotencyKey,
    /// A case's materials.
    Case,
}

/// What is wrong with a revocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevocationFault {
    /// A time member does not parse.
    Time {
        /// The member.
        member: &'static str,
        /// Why.
        reason: String,
    },
    /// `expires` too near or too far.
    Expiry {
        /// The longest a token of the configured issuers lives, in seconds.
        shortest_secs: i64,
    },
    /// Neither a valid `jti` nor a valid `sub`.
    Target,
}

/// Which kind of policy entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryKind {
    /// A grant.
    Grant,
    /// A dataset.
    Dataset,
    /// An entry of the token deny-list.
    RevokedToken,
}

impl EntryKind {
    fn en(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Dataset => "dataset",
            Self::RevokedToken => "deny-list entry",
        }
    }

    fn zh(self) -> &'static str {
        match self {
            Self::Grant => "授权",
            Self::Dataset => "数据集",
            Self::RevokedToken => "拒绝名单条目",
        }
    }
}

/// An `If-Match` / `If-None-Match` that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// `If-None-Match: *`, but the entry exists.
    Exists,
    /// The ETag is stale: someone else saved first.
    Changed,
    /// `If-Match`, but the entry does not exist.
    Missing,
}

/// One problem, with what its detail is built from.
#[derive(Clone, Debug)]
pub enum Problem {
    /// The token was refused.
    Token(AuthError),
    /// The client certificate names another department than the token.
    CertificateDepartmentMismatch {
        /// The certificate's department, if it names one.
        certificate: Option<String>,
        /// The token's.
        token: String,
    },
    /// The token's `cnf.x5t#S256` names another certificate.
    CertificateBindingMismatch,
    /// The connection's certificate was revoked since the handshake.
    ClientCertificateRevoked,
    /// A header is repeated or not text.
    InvalidHeader {
        /// The header.
        name: String,
        /// What is wrong.
        fault: HeaderFault,
    },
    /// The headers are over `limits.max_header_bytes`.
    HeadersTooLarge {
        /// Their size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// No `X-Purpose`.
    PurposeRequired,
    /// A malformed identifier.
    InvalidId(IdInput, InvalidId),
    /// More fields named than allowed.
    TooManyFields {
        /// The most.
        max: usize,
    },
    /// A malformed query string.
    InvalidQuery(QueryFault),
    /// A malformed path.
    InvalidPath(PathFault),
    /// A malformed body.
    InvalidBody(BodyFault),
    /// A body of another media type.
    UnsupportedMediaType {
        /// Whether TOML is accepted too.
        toml: bool,
    },
    /// The body is over the limit (the server's words).
    BodyTooLarge(String),
    /// The body took too long (the server's words).
    RequestTimeout(String),
    /// No route at this path.
    NoSuchRoute,
    /// The route does not answer this method.
    MethodNotAllowed,
    /// No conditions, or too many.
    ConditionCount {
        /// The most.
        max: usize,
    },
    /// A condition that does not fit its field.
    InvalidCondition(ConditionError),
    /// Two conditions on one field.
    ConditionRepeated,
    /// A case of another department than the caller's.
    OtherDepartmentsCase {
        /// The department named.
        consumer: String,
    },
    /// An `Idempotency-Key` sent before with another request.
    IdempotencyKeyReused,
    /// An `Idempotency-Key` whose first request is still being answered.
    IdempotencyKeyInFlight,
    /// A condition on a field the dataset does not have.
    UnknownConditionField {
        /// The field.
        field: String,
        /// The dataset.
        dataset: String,
    },
    /// A condition on a verify-only field that the grant does not name.
    PredicateNotGranted {
        /// The grant.
        grant: String,
        /// The field.
        field: String,
        /// The predicates the grant names of it, as JSON.
        allowed: Vec<String>,
    },
    /// The grant's verify budget for the resident is used up today.
    VerifyBudgetExhausted {
        /// The grant.
        grant: String,
        /// Verify requests per resident and day.
        limit: u32,
    },
    /// An empty batch.
    BatchEmpty,
    /// A batch over a limit.
    BatchTooLarge {
        /// IDs sent.
        sent: usize,
        /// The limit.
        limit: usize,
        /// Whose limit.
        by: BatchLimit,
    },
    /// The policy decision refused.
    Denied(Denial),
    /// Allowed, but the owner holds no record.
    ResidentNotFound {
        /// The dataset.
        dataset: String,
    },
    /// Over a rate limit or quota.
    RateLimited(Limit),
    /// Too many requests without a valid token from one source.
    UnauthenticatedRateLimited {
        /// The limit as configured.
        spec: String,
    },
    /// The caller's department is suspended.
    DepartmentSuspended {
        /// The department.
        dept: String,
        /// Since when, formatted.
        since: String,
    },
    /// A staff route without the role.
    RoleRequired {
        /// The role.
        role: String,
        /// The department whose staff hold it.
        operator: String,
    },
    /// The embedded store failed.
    ProviderFailed,
    /// The owner's system cannot be reached.
    UpstreamUnavailable {
        /// The dataset.
        dataset: String,
    },
    /// The owner's system did not answer in time.
    UpstreamTimeout {
        /// The dataset.
        dataset: String,
        /// The time allowed.
        millis: u64,
    },
    /// The owner's system answered what its contract does not allow.
    UpstreamInvalidAnswer {
        /// The dataset.
        dataset: String,
    },
    /// The audit event could not be made durable.
    AuditUnavailable,
    /// The audit log could not be read.
    AuditReadFailed {
        /// Whether the gateway's log says more.
        logged: bool,
    },
    /// PostgreSQL cannot serve a cluster-wide audit read.
    CentralAuditUnavailable(ClusterRead),
    /// PostgreSQL, holding the policy set, cannot be reached.
    PolicyStoreUnavailable,
    /// No event with this sequence number.
    EventNotFound {
        /// The node.
        node: String,
        /// The sequence number.
        seq: u64,
    },
    /// No anomaly flag with this identity.
    FlagNotFound {
        /// The identity asked for.
        id: String,
    },
    /// A review mark could not be stored (the gateway's log says why).
    ReviewNotStored,
    /// An objection names no disclosure of the resident's own record.
    DisclosureNotFound {
        /// The node named.
        node: String,
        /// The sequence number named.
        seq: u64,
    },
    /// No objection with this id (for this caller).
    ObjectionNotFound {
        /// The id asked for.
        id: String,
    },
    /// An objection that cannot be lodged or answered as it stands.
    ObjectionConflict(ObjectionFault),
    /// An objection could not be read or stored (the gateway's log says why).
    ObjectionNotStored,
    /// No sharing request with this id.
    SharingRequestNotFound {
        /// The id asked for.
        id: String,
    },
    /// A step of the sharing workflow refused.
    Sharing(SharingFault),
    /// Sharing requests could not be read or stored (the gateway's log says why).
    SharingNotStored,
    /// No data objection with this id (for this caller).
    DataObjectionNotFound {
        /// The id asked for.
        id: String,
    },
    /// A data objection reported or answered by someone it is not for.
    DataObjectionNotYours {
        /// Who may.
        what: String,
    },
    /// A data objection answered already.
    DataObjectionAnswered {
        /// Its id.
        id: String,
    },
    /// A data objection or answer that is not valid.
    InvalidDataObjection {
        /// Why.
        what: String,
    },
    /// Data objections could not be read or stored (the gateway's log says why).
    DataObjectionNotStored,
    /// A cluster-only route on a single node.
    NotACluster,
    /// Pruning was asked for, but `audit.retention_days` is not set.
    RetentionNotSet,
    /// No such department.
    DepartmentNotFound {
        /// The id.
        id: String,
    },
    /// Suspending the operator department.
    CannotSuspendOperator,
    /// The suspension state could not be written.
    SuspensionNotStored(String),
    /// A malformed revocation.
    InvalidRevocation(RevocationFault),
    /// A reason that is empty or too long.
    InvalidReason,
    /// The body names another entry than the path.
    IdMismatch {
        /// Which kind.
        kind: EntryKind,
        /// The id in the body.
        body: String,
        /// The id in the path.
        path: String,
    },
    /// A save that changes nothing.
    NoChange {
        /// Which kind.
        kind: EntryKind,
        /// The id.
        id: String,
    },
    /// No such grant or dataset.
    EntryNotFound {
        /// Which kind.
        kind: EntryKind,
        /// The id.
        id: String,
    },
    /// No such version of a grant.
    VersionNotFound {
        /// The grant.
        grant: String,
        /// The version.
        version: u32,
    },
    /// An admin change without `If-Match`.
    PreconditionRequired,
    /// An `If-Match` / `If-None-Match` that does not hold.
    PreconditionFailed(Precondition),
    /// The change would make the policy set invalid.
    InvalidPolicy {
        /// Every problem, as located messages.
        errors: Vec<String>,
    },
    /// Deleting a dataset that grants use.
    DatasetInUse {
        /// The dataset.
        dataset: String,
        /// The grants.
        grants: Vec<String>,
    },
    /// An import of records to a dataset an upstream answers.
    DatasetNotEmbedded {
        /// The dataset.
        dataset: String,
    },
    /// An import with bad rows (each `line N: what`, never a value).
    InvalidRecords {
        /// The bad rows, at most 100.
        errors: Vec<String>,
    },
    /// An import's body of another media type.
    RecordsMediaType,
    /// An import's body over `limits.max_import_bytes`.
    ImportTooLarge {
        /// The limit.
        limit: u64,
    },
    /// An import could not be stored (the records in force are unchanged).
    RecordsNotStored(String),
    /// A backup could not be written.
    BackupFailed(String),
    /// A backup with the keys, where `backup.allow_keys` is false.
    BackupKeysRefused,
    /// The change was recorded but could not be applied.
    PolicyWriteFailed,
    /// Another node committed a change while this one was prepared.
    PolicyChangedElsewhere,
    /// The policy history could not be read.
    HistoryReadFailed(Option<String>),
}

impl Problem {
    /// Its problem type.
    #[allow(clippy::too_many_lines)] // one arm per problem, as a table
    pub fn kind(&self) -> ProblemType {
        use ProblemType as T;
        match self {
            Self::Token(e) => match e {
                AuthError::Missing => T::TokenMissing,
                AuthError::Expired => T::TokenExpired,
                AuthError::Revoked => T::TokenRevoked,
                AuthError::UnknownDepartment => T::UnknownDepartment,
                AuthError::OutOfScope(_) => T::IssuerOutOfScope,
                AuthError::KeysUnavailable => T::TokenKeysUnavailable,
                _ => T::TokenInvalid,
            },
            Self::CertificateDepartmentMismatch { .. } => T::CertificateDepartmentMismatch,
            Self::CertificateBindingMismatch => T::CertificateBindingMismatch,
            Self::ClientCertificateRevoked => T::ClientCertificateRevoked,
            Self::InvalidHeader { .. } => T::InvalidHeader,
            Self::HeadersTooLarge { .. } => T::HeadersTooLarge,
            Self::PurposeRequired => T::PurposeRequired,
            Self::InvalidId(input, _) => match input {
                IdInput::Resident => T::InvalidResidentId,
                IdInput::Dataset => T::InvalidDatasetId,
                IdInput::Purpose => T::InvalidPurpose,
                IdInput::CaseRef => T::InvalidCaseRef,
                IdInput::FieldList => T::InvalidFieldList,
                IdInput::Department => T::InvalidDepartment,
                IdInput::Grant => T::InvalidGrantId,
            },
            Self::TooManyFields { .. } => T::InvalidFieldList,
            Self::InvalidQuery(_) => T::InvalidQuery,
            Self::InvalidPath(_) => T::InvalidPath,
            Self::InvalidBody(_) => T::InvalidBody,
            Self::UnsupportedMediaType { .. } | Self::RecordsMediaType => T::UnsupportedMediaType,
            Self::ImportTooLarge { .. } => T::BodyTooLarge,
            Self::DatasetNotEmbedded { .. } => T::DatasetNotEmbedded,
            Self::InvalidRecords { .. } => T::InvalidRecords,
            Self::RecordsNotStored(_) => T::SuspensionNotStored,
            Self::BackupFailed(_) => T::BackupFailed,
            Self::BackupKeysRefused => T::BackupKeysRefused,
            Self::BodyTooLarge(_) => T::BodyTooLarge,
            Self::RequestTimeout(_) => T::RequestTimeout,
            Self::NoSuchRoute => T::NoSuchRoute,
            Self::MethodNotAllowed => T::MethodNotAllowed,
            Self::ConditionCount { .. } | Self::InvalidCondition(_) | Self::ConditionRepeated => {
                T::InvalidCondition
            }
            Self::UnknownConditionField { .. } => T::UnknownField,
            Self::IdempotencyKeyReused => T::IdempotencyKeyReused,
            Self::OtherDepartmentsCase { .. } => T::OtherDepartmentsCase,
            Self::IdempotencyKeyInFlight => T::IdempotencyKeyInFlight,
            Self::PredicateNotGranted { .. } => T::PredicateNotGranted,
            Self::VerifyBudgetExhausted { .. } => T::VerifyBudgetExhausted,
            Self::BatchEmpty | Self::BatchTooLarge { .. } => T::BatchTooLarge,
            Self::Denied(d) => d.reason.into(),
            Self::ResidentNotFound { .. } => T::ResidentNotFound,
            Self::RateLimited(_) => T::RateLimited,
            Self::UnauthenticatedRateLimited { .. } => T::UnauthenticatedRateLimited,
            Self::DepartmentSuspended { .. } => T::DepartmentSuspended,
            Self::RoleRequired { .. } => T::RoleRequired,
            Self::ProviderFailed => T::ProviderFailed,
            Self::UpstreamUnavailable { .. } => T::UpstreamUnavailable,
            Self::UpstreamTimeout { .. } => T::UpstreamTimeout,
            Self::UpstreamInvalidAnswer { .. } => T::UpstreamInvalidAnswer,
            Self::AuditUnavailable => T::AuditUnavailable,
            Self::AuditReadFailed { .. } => T::AuditReadFailed,
            Self::CentralAuditUnavailable(_) | Self::PolicyStoreUnavailable => {
                T::ClusterUnavailable
            }
            Self::EventNotFound { .. } => T::EventNotFound,
            Self::FlagNotFound { .. } => T::FlagNotFound,
            Self::DisclosureNotFound { .. } => T::DisclosureNotFound,
            Self::ObjectionNotFound { .. } => T::ObjectionNotFound,
            Self::ObjectionConflict(_) => T::ObjectionConflict,
            Self::ObjectionNotStored => T::ObjectionNotStored,
            Self::SharingRequestNotFound { .. } => T::SharingRequestNotFound,
            Self::Sharing(f) => f.kind(),
            Self::SharingNotStored => T::SharingNotStored,
            Self::DataObjectionNotFound { .. } => T::DataObjectionNotFound,
            Self::DataObjectionNotYours { .. } => T::DataObjectionNotYours,
            Self::DataObjectionAnswered { .. } => T::DataObjectionAnswered,
            Self::InvalidDataObjection { .. } => T::InvalidDataObjection,
            Self::DataObjectionNotStored => T::DataObjectionNotStored,
            Self::ReviewNotStored => T::ReviewNotStored,
            Self::NotACluster => T::NotACluster,
            Self::RetentionNotSet => T::RetentionNotSet,
            Self::DepartmentNotFound { .. } => T::DepartmentNotFound,
            Self::CannotSuspendOperator => T::CannotSuspendOperator,
            Self::SuspensionNotStored(_) => T::SuspensionNotStored,
            Self::InvalidRevocation(_) => T::InvalidRevocation,
            Self::InvalidReason => T::InvalidReason,
            Self::IdMismatch { .. } => T::IdMismatch,
            Self::NoChange { .. } => T::NoChange,
            Self::EntryNotFound { kind, .. } => match kind {
                EntryKind::Grant => T::GrantNotFound,
                EntryKind::Dataset => T::DatasetNotFound,
                EntryKind::RevokedToken => T::RevokedTokenNotFound,
            },
            Self::VersionNotFound { .. } => T::VersionNotFound,
            Self::PreconditionRequired => T::PreconditionRequired,
            Self::PreconditionFailed(_) => T::PreconditionFailed,
            Self::InvalidPolicy { .. } => T::InvalidPolicy,
            Self::DatasetInUse { .. } => T::DatasetInUse,
            Self::PolicyWriteFailed => T::PolicyWriteFailed,
            Self::PolicyChangedElsewhere => T::PolicyChangedElsewhere,
            Self::HistoryReadFailed(_) => T::HistoryReadFailed,
        }
    }

    /// What happened and what to do about it, in `lang`.
    pub fn detail(&self, lang: Lang) -> String {
        match lang {
            Lang::En => self.detail_en(),
            Lang::Zh => self.detail_zh(),
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per problem, as a table
    fn detail_en(&self) -> String {
        match self {
            Self::Token(e) => e.to_string(),
            Self::CertificateDepartmentMismatch { certificate, token } => format!(
                "the client certificate names {}, the token {token}: present the certificate of the token's department",
                certificate.as_deref().unwrap_or("no department")
            ),
            Self::CertificateBindingMismatch => {
                "the token's cnf.x5t#S256 names a certificate this connection was not opened with"
                    .into()
            }
            Self::ClientCertificateRevoked => "the certificate this connection was opened with has been revoked, or its revocation list is out of date; connect again with a valid certificate".into(),
            Self::InvalidHeader { name, fault } => match fault {
                HeaderFault::Repeated => format!("header {name} appears more than once"),
                HeaderFault::NotText => format!("header {name} is not UTF-8 text"),
                HeaderFault::IdempotencyKey { max } => format!(
                    "header {name} must be 1 to {max} visible ASCII characters, bare or in double quotes"
                ),
            },
            Self::HeadersTooLarge { bytes, limit } => {
                format!("the request's headers hold {bytes} bytes; at most {limit} are read")
            }
            Self::PurposeRequired => "name the purpose of this query (用途) in the X-Purpose header, e.g. X-Purpose: dibao_review".into(),
            Self::InvalidId(_, e) => format!("{} is not valid: {}", e.what, e.reason),
            Self::TooManyFields { max } => format!("at most {max} fields may be named"),
            Self::InvalidQuery(fault) => match fault {
                QueryFault::Unreadable(text) => text.clone(),
                QueryFault::Expected { param, values } => {
                    format!("{param}: expected {}", or_list(values, " or "))
                }
                QueryFault::Time { param, reason } => format!("{param}: {reason}"),
                QueryFault::Cursor { cluster: false } => {
                    "cursor: not a cursor this gateway returned".into()
                }
                QueryFault::Cursor { cluster: true } => {
                    "cursor: not a cursor this gateway returned for a cluster-wide search".into()
                }
                QueryFault::Limit => "limit: must be between 1 and 1000".into(),
                QueryFault::FromAfterTo => "from: is after to".into(),
                QueryFault::OtherNode { this_node } => format!(
                    "node: this node is {this_node}; another node's log is exported from PostgreSQL in cluster mode"
                ),
            },
            Self::InvalidPath(PathFault::Unreadable(text)) => text.clone(),
            Self::InvalidPath(PathFault::Sequence) => {
                "the sequence number must be a positive integer".into()
            }
            Self::InvalidBody(fault) => match fault {
                BodyFault::Unreadable(text) => text.clone(),
                BodyFault::NotUtf8 => "the body is not UTF-8".into(),
                BodyFault::Json(e) => format!("JSON: {e}"),
                BodyFault::Toml(e) => format!("TOML: {e}"),
                BodyFault::Date => "date must be YYYY-MM-DD".into(),
            },
            Self::UnsupportedMediaType { toml: true } => {
                "send the body as application/json or application/toml".into()
            }
            Self::UnsupportedMediaType { toml: false } => {
                "send the body as application/json".into()
            }
            Self::BodyTooLarge(text) | Self::RequestTimeout(text) => text.clone(),
            Self::NoSuchRoute => "the gateway serves no resource at this path; see docs/integrating.md for its routes".into(),
            Self::MethodNotAllowed => "this resource does not answer that method".into(),
            Self::ConditionCount { max } => format!("send 1 to {max} conditions"),
            Self::InvalidCondition(e) => e.to_string(),
            Self::ConditionRepeated => {
                "ask at most one condition of each field in a request".into()
            }
            Self::IdempotencyKeyReused => "this Idempotency-Key was sent in the last 24 hours with another request (another dataset, resident, purpose, case reference or body); a retry sends exactly the first request, and a new request takes a new key".into(),
            Self::IdempotencyKeyInFlight => "the first request with this Idempotency-Key is still being answered; retry after a moment".into(),
            Self::OtherDepartmentsCase { consumer } => format!(
                "a case reference is unique only within its department: a department sees its own cases, and the cases of {consumer} are its own (and the privacy officers')"
            ),
            Self::UnknownConditionField { field, dataset } => {
                format!("field \"{field}\" is not a field of dataset {dataset}")
            }
            Self::PredicateNotGranted {
                grant,
                field,
                allowed,
            } => format!(
                "grant {grant} allows of field \"{field}\" only: {}",
                allowed.join(", ")
            ),
            Self::VerifyBudgetExhausted { grant, limit } => format!(
                "grant {grant} allows {limit} verify requests per resident and day; ask again tomorrow"
            ),
            Self::BatchEmpty => "send at least one resident ID".into(),
            Self::BatchTooLarge { sent, limit, by } => {
                let whose = match by {
                    BatchLimit::Grant(grant) => format!("grant {grant}"),
                    BatchLimit::Gateway => "the gateway".into(),
                };
                format!("{sent} resident IDs were sent; {whose} allows at most {limit}")
            }
            Self::Denied(d) => deny_en(&d.detail),
            Self::ResidentNotFound { dataset } => {
                format!("dataset {dataset} holds no record for this resident ID")
            }
            Self::RateLimited(limit) => match limit {
                Limit::Department { dept, spec } => {
                    format!("department {dept} is over its rate limit ({spec})")
                }
                Limit::Grant { grant, spec } => {
                    format!("the quota of grant {grant} ({spec}) is used up")
                }
                Limit::GrantBatch { grant, spec, n } => {
                    format!("the quota of grant {grant} ({spec}) cannot cover {n} residents now")
                }
                Limit::Resident { spec } => {
                    format!("a resident may ask for their own record {spec}; try again shortly")
                }
            },
            Self::UnauthenticatedRateLimited { spec } => format!(
                "more than {spec} requests without a valid token came from this address; they are counted, not served"
            ),
            Self::DepartmentSuspended { dept, since } => format!(
                "department {dept} is suspended by the exchange's administrators (since {since}); no request of its systems is served until it is resumed"
            ),
            Self::RoleRequired { role, operator } => {
                format!("this route needs role {role} (held by staff of {operator})")
            }
            Self::ProviderFailed => "the gateway's store could not answer for this dataset".into(),
            Self::UpstreamUnavailable { dataset } => format!(
                "the provider of dataset {dataset} cannot be reached now; nothing was disclosed, try again later"
            ),
            Self::UpstreamTimeout { dataset, millis } => {
                format!("the provider of dataset {dataset} did not answer within {millis} ms")
            }
            Self::UpstreamInvalidAnswer { dataset } => format!(
                "the provider of dataset {dataset} answered something its catalog entry does not allow; nothing was disclosed"
            ),
            Self::AuditUnavailable => "the request could not be recorded in the audit log, so no data was released; try again later".into(),
            Self::AuditReadFailed { logged: true } => {
                "the audit log could not be read; see the gateway's log".into()
            }
            Self::AuditReadFailed { logged: false } => "the audit log could not be read".into(),
            Self::CentralAuditUnavailable(read) => {
                let what = match read {
                    ClusterRead::Search => "a search",
                    ClusterRead::OtherNodesEvent => "an event of another node",
                    ClusterRead::DisclosureReport => "a disclosure report",
                    ClusterRead::Export => "an export of the cluster",
                    ClusterRead::Statistics => "the statistics",
                    ClusterRead::IdempotencyKey => "an idempotency key",
                    ClusterRead::Case => "a case's materials",
                };
                format!(
                    "{what} covers every node, from PostgreSQL, which cannot be read now; try again later"
                )
            }
            Self::PolicyStoreUnavailable => "PostgreSQL, which holds the cluster's policy set, cannot be reached now; nothing changed, and the policy in force stays".into(),
            Self::EventNotFound { node, seq } => {
                format!("node {node} has no audit event with sequence number {seq}")
            }
            Self::FlagNotFound { id } => format!(
                "no flag {id} is raised on its day under the rules in force (an id is kind:department:day:caller, as the statistics list it)"
            ),
            Self::ReviewNotStored => {
                "the review mark could not be written; it is recorded in the audit log only, and the gateway's log names the cause".into()
            }
            Self::DisclosureNotFound { node, seq } => format!(
                "your record holds no use of your data numbered {seq} on node {node}: name one that GET /v1/me/disclosures lists"
            ),
            Self::ObjectionNotFound { id } => format!("there is no objection {id}"),
            Self::ObjectionConflict(fault) => match fault {
                ObjectionFault::AlreadyOpen { id } => {
                    format!("objection {id} about this use is still open; it will be answered")
                }
                ObjectionFault::TooMany { max } => format!(
                    "{max} of your objections are open; each will be answered before more are taken"
                ),
                ObjectionFault::Closed { id } => format!("objection {id} is closed"),
            },
            Self::ObjectionNotStored => {
                "objections cannot be read or written now; nothing changed. Try again later".into()
            }
            Self::SharingRequestNotFound { id } => format!("there is no sharing request {id}"),
            Self::Sharing(f) => match f {
                SharingFault::NotYours { what } => what.clone(),
                SharingFault::NotWaiting { id, state } => {
                    format!("sharing request {id} is {state}, not waiting for this step")
                }
                SharingFault::UnknownDecision { decision } => {
                    format!("decision \"{decision}\": expected approve, refuse or return")
                }
                SharingFault::MoreThanAsked { field } => {
                    format!("field {field} was not asked for: an approval may give fewer fields, never more")
                }
                SharingFault::ReasonRequired { decision } => {
                    format!("a decision to {decision} needs a reason (1 to 500 characters)")
                }
                SharingFault::NotToBeShared { dataset } => format!(
                    "dataset {dataset} is not to be shared (不予共享): it cannot be asked for"
                ),
                SharingFault::RenewsGone { grant, changed } => match changed {
                    None => format!("grant {grant}, which this request renews, is no longer in force (revoked or removed); the request is refused: file a new one"),
                    Some(v) => format!("grant {grant}, which this request renews, changed since it was filed (now version {v}); the request is refused: file it again against the grant as it is"),
                },
            },
            Self::SharingNotStored => {
                "sharing requests cannot be read or written now; nothing changed. Try again later".into()
            }
            Self::DataObjectionNotFound { id } => format!("there is no data objection {id} for you"),
            Self::DataObjectionNotYours { what } => what.clone(),
            Self::DataObjectionAnswered { id } => format!("data objection {id} is answered already"),
            Self::InvalidDataObjection { what } => what.clone(),
            Self::DataObjectionNotStored => {
                "data objections cannot be read or written now; nothing changed. Try again later".into()
            }
            Self::NotACluster => "policy versions are kept in PostgreSQL in cluster mode; on a single node read /v1/admin/history".into(),
            Self::RetentionNotSet => "audit.retention_days is not set: the log keeps everything, and nothing is pruned".into(),
            Self::DepartmentNotFound { id } => {
                format!("department {id} is not in departments.toml")
            }
            Self::CannotSuspendOperator => {
                "its administrators must stay able to resume the others".into()
            }
            Self::SuspensionNotStored(e) => {
                format!("the suspension state could not be written ({e}); nothing changed")
            }
            Self::InvalidRevocation(fault) => match fault {
                RevocationFault::Time { member, reason } => format!("{member}: {reason}"),
                RevocationFault::Expiry { shortest_secs } => format!(
                    "expires must be at least {shortest_secs} seconds away (the longest a token of the configured issuers can live) and at most a year away"
                ),
                RevocationFault::Target => "name either a jti, or a sub (with an optional issued_before); each 1 to 128 printable characters".into(),
            },
            Self::InvalidReason => "give a reason of 1 to 500 characters".into(),
            Self::IdMismatch { kind, body, path } => {
                format!("the body names {} {body}, the path {path}", kind.en())
            }
            Self::EntryNotFound { kind, id } => format!("there is no {} {id}", kind.en()),
            Self::NoChange { kind, id } => format!(
                "{} {id} as sent is the one in force: nothing was saved, and no version was made",
                kind.en()
            ),
            Self::VersionNotFound { grant, version } => {
                format!("the history holds no version {version} of grant {grant}")
            }
            Self::PreconditionRequired => "send If-Match with the ETag from a GET, so that you do not overwrite someone else's change".into(),
            Self::PreconditionFailed(p) => match p {
                Precondition::Exists => "If-None-Match: * was sent, but the entry exists".into(),
                Precondition::Changed => "the entry changed since you read it; GET it again, reapply your edit and send the new ETag".into(),
                Precondition::Missing => "If-Match was sent, but the entry does not exist".into(),
            },
            Self::InvalidPolicy { errors } => format!(
                "{} problem(s); nothing was changed: {}",
                errors.len(),
                errors.join("; ")
            ),
            Self::DatasetInUse { dataset, grants } => format!(
                "dataset {dataset} is used by grants {}; change or delete them first",
                grants.join(", ")
            ),
            Self::DatasetNotEmbedded { dataset } => format!(
                "dataset {dataset} is answered by its owner's own system (provider kind http); the gateway holds no records of it to import"
            ),
            Self::InvalidRecords { errors } => format!(
                "nothing was imported: {} bad row(s) (at most 100 are listed in errors): {}",
                errors.len(),
                errors.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            ),
            Self::RecordsMediaType => "send the records as application/x-ndjson (one JSON object per line) or text/csv (a header row; lists separated by ;)".into(),
            Self::ImportTooLarge { limit } => format!(
                "an import is read up to limits.max_import_bytes ({limit} bytes); nothing was imported"
            ),
            Self::RecordsNotStored(e) => {
                format!("the records could not be stored ({e}); the records in force are unchanged")
            }
            Self::BackupFailed(e) => format!(
                "the backup could not be written ({e}); nothing changed. Check the data directory's free space: a backup is written there before it is sent"
            ),
            Self::BackupKeysRefused => "backup.allow_keys is false: a backup through the API holds no keys. Take one without keys, and copy the keys from the data directory with the machine's own access".into(),
            Self::PolicyWriteFailed => "the change was recorded but could not be written; nothing changed in force".into(),
            Self::PolicyChangedElsewhere => "another node committed a policy change while this one was prepared; this node enforces it now: read the entry again and retry".into(),
            Self::HistoryReadFailed(Some(e)) => e.clone(),
            Self::HistoryReadFailed(None) => "the recorded version cannot be read".into(),
        }
    }

    #[allow(clippy::too_many_lines)] // one arm per problem, as a table
    fn detail_zh(&self) -> String {
        match self {
            Self::Token(e) => auth_zh(e),
            Self::CertificateDepartmentMismatch { certificate, token } => format!(
                "客户端证书属于 {}，令牌属于 {token}：请使用令牌所属部门的证书",
                certificate.as_deref().unwrap_or("（未标明部门）")
            ),
            Self::CertificateBindingMismatch => {
                "令牌的 cnf.x5t#S256 指向的证书不是本连接所用的证书".into()
            }
            Self::ClientCertificateRevoked => {
                "本连接所用的证书已被吊销，或其吊销列表已过期；请用有效证书重新连接".into()
            }
            Self::InvalidHeader { name, fault } => match fault {
                HeaderFault::Repeated => format!("请求头 {name} 出现了不止一次"),
                HeaderFault::NotText => format!("请求头 {name} 不是 UTF-8 文本"),
                HeaderFault::IdempotencyKey { max } => {
                    format!("请求头 {name} 须为 1 到 {max} 个可见 ASCII 字符，可加双引号")
                }
            },
            Self::HeadersTooLarge { bytes, limit } => {
                format!("请求头共 {bytes} 字节；最多读取 {limit} 字节")
            }
            Self::PurposeRequired => {
                "请在 X-Purpose 请求头中说明查询用途，例如 X-Purpose: dibao_review".into()
            }
            Self::InvalidId(input, e) => {
                let what = match input {
                    IdInput::Resident => "居民身份证号码",
                    IdInput::Dataset => "数据集标识",
                    IdInput::Purpose => "用途代码",
                    IdInput::CaseRef => "办件编号",
                    IdInput::FieldList => "字段名",
                    IdInput::Department => "部门标识",
                    IdInput::Grant => "授权标识",
                };
                format!("{what}无效：{}", e.reason.zh())
            }
            Self::TooManyFields { max } => format!("最多可列出 {max} 个字段"),
            Self::InvalidQuery(fault) => match fault {
                QueryFault::Unreadable(text) => format!("查询参数无法解析：{text}"),
                QueryFault::Expected { param, values } => {
                    format!("{param}：应为 {}", or_list(values, " 或 "))
                }
                QueryFault::Time { param, reason } => format!("{param}：时间无效（{reason}）"),
                QueryFault::Cursor { .. } => "cursor：不是本网关返回的游标".into(),
                QueryFault::Limit => "limit：须在 1 到 1000 之间".into(),
                QueryFault::FromAfterTo => "from：晚于 to".into(),
                QueryFault::OtherNode { this_node } => format!(
                    "node：本节点是 {this_node}；集群模式下其他节点的日志从 PostgreSQL 导出"
                ),
            },
            Self::InvalidPath(PathFault::Unreadable(text)) => format!("路径无法解析：{text}"),
            Self::InvalidPath(PathFault::Sequence) => "序号须为正整数".into(),
            Self::InvalidBody(fault) => match fault {
                BodyFault::Unreadable(text) => format!("请求体无法读取：{text}"),
                BodyFault::NotUtf8 => "请求体不是 UTF-8 文本".into(),
                BodyFault::Json(e) => format!("JSON 无效：{e}"),
                BodyFault::Toml(e) => format!("TOML 无效：{e}"),
                BodyFault::Date => "日期格式须为 YYYY-MM-DD".into(),
            },
            Self::UnsupportedMediaType { toml: true } => {
                "请以 application/json 或 application/toml 发送请求体".into()
            }
            Self::UnsupportedMediaType { toml: false } => "请以 application/json 发送请求体".into(),
            Self::BodyTooLarge(text) => format!("请求体超过上限：{text}"),
            Self::RequestTimeout(text) => format!("请求体未在时限内送达：{text}"),
            Self::NoSuchRoute => "网关在此路径下没有资源；路由列表见 docs/integrating.md".into(),
            Self::MethodNotAllowed => "此资源不响应该方法".into(),
            Self::ConditionCount { max } => format!("请发送 1 到 {max} 个条件"),
            Self::InvalidCondition(e) => e.zh(),
            Self::ConditionRepeated => "每个字段在一次请求中最多一个条件".into(),
            Self::IdempotencyKeyReused => "此 Idempotency-Key 在过去 24 小时内已用于另一请求（数据集、居民、用途、办件编号或请求体不同）；重试须原样发送首次请求，新请求须用新的幂等键".into(),
            Self::IdempotencyKeyInFlight => "使用此 Idempotency-Key 的首次请求仍在处理中；请稍后重试".into(),
            Self::OtherDepartmentsCase { consumer } => format!(
                "办件编号只在本部门内唯一：各部门只能查看本部门的办件，{consumer} 的办件只有该部门（及隐私监督员）可以查看"
            ),
            Self::UnknownConditionField { field, dataset } => {
                format!("字段“{field}”不是数据集 {dataset} 的字段")
            }
            Self::PredicateNotGranted {
                grant,
                field,
                allowed,
            } => format!(
                "授权 {grant} 对字段“{field}”只允许以下核验：{}",
                allowed.join("，")
            ),
            Self::VerifyBudgetExhausted { grant, limit } => {
                format!("授权 {grant} 每天对每位居民最多允许 {limit} 次核验；请明天再试")
            }
            Self::BatchEmpty => "请至少发送一个居民身份证号码".into(),
            Self::BatchTooLarge { sent, limit, by } => {
                let whose = match by {
                    BatchLimit::Grant(grant) => format!("授权 {grant}"),
                    BatchLimit::Gateway => "网关".into(),
                };
                format!("发送了 {sent} 个居民身份证号码；{whose}最多允许 {limit} 个")
            }
            Self::Denied(d) => deny_zh(&d.detail),
            Self::ResidentNotFound { dataset } => {
                format!("数据集 {dataset} 中没有该居民身份证号码的记录")
            }
            Self::RateLimited(limit) => match limit {
                Limit::Department { dept, spec } => {
                    format!("部门 {dept} 超过了频率限制（{spec}）")
                }
                Limit::Grant { grant, spec } => format!("授权 {grant} 的配额（{spec}）已用完"),
                Limit::GrantBatch { grant, spec, n } => {
                    format!("授权 {grant} 的配额（{spec}）目前不足以覆盖 {n} 位居民")
                }
                Limit::Resident { spec } => format!("查询本人记录的频率上限为 {spec}；请稍后再试"),
            },
            Self::UnauthenticatedRateLimited { spec } => {
                format!("来自此地址的无有效令牌请求超过 {spec}；这些请求只计数，不予处理")
            }
            Self::DepartmentSuspended { dept, since } => format!(
                "部门 {dept} 已被交换平台管理员暂停（自 {since} 起）；恢复之前不处理其系统的任何请求"
            ),
            Self::RoleRequired { role, operator } => {
                format!("此路由需要角色 {role}（由 {operator} 的工作人员持有）")
            }
            Self::ProviderFailed => "网关的存储无法应答此数据集".into(),
            Self::UpstreamUnavailable { dataset } => {
                format!("数据集 {dataset} 的提供方目前无法访问；未提供任何数据，请稍后再试")
            }
            Self::UpstreamTimeout { dataset, millis } => {
                format!("数据集 {dataset} 的提供方未在 {millis} 毫秒内应答")
            }
            Self::UpstreamInvalidAnswer { dataset } => {
                format!("数据集 {dataset} 的提供方应答了其目录条目不允许的内容；未提供任何数据")
            }
            Self::AuditUnavailable => "请求无法记入审计日志，因此未提供任何数据；请稍后再试".into(),
            Self::AuditReadFailed { logged: true } => "审计日志无法读取；详见网关日志".into(),
            Self::AuditReadFailed { logged: false } => "审计日志无法读取".into(),
            Self::CentralAuditUnavailable(read) => {
                let what = match read {
                    ClusterRead::Search => "检索",
                    ClusterRead::OtherNodesEvent => "其他节点的事件",
                    ClusterRead::DisclosureReport => "披露报告",
                    ClusterRead::Export => "集群日志导出",
                    ClusterRead::Statistics => "统计",
                    ClusterRead::IdempotencyKey => "幂等键",
                    ClusterRead::Case => "办件材料清单",
                };
                format!("{what}覆盖所有节点，需读取 PostgreSQL，而它目前无法读取；请稍后再试")
            }
            Self::PolicyStoreUnavailable => {
                "保存集群策略集的 PostgreSQL 目前无法访问；未做任何变更，现行策略不变".into()
            }
            Self::EventNotFound { node, seq } => format!("节点 {node} 没有序号为 {seq} 的审计事件"),
            Self::FlagNotFound { id } => format!(
                "按现行规则，当日没有异常标记 {id}（标识为 类型:部门:日期:调用方，与统计结果所列一致）"
            ),
            Self::ReviewNotStored => "复核标记无法写入；仅记入审计日志，原因见网关日志".into(),
            Self::DisclosureNotFound { node, seq } => format!(
                "您的记录中没有节点 {node} 上序号为 {seq} 的数据使用：请指定 GET /v1/me/disclosures 所列的一项"
            ),
            Self::ObjectionNotFound { id } => format!("没有异议 {id}"),
            Self::ObjectionConflict(fault) => match fault {
                ObjectionFault::AlreadyOpen { id } => {
                    format!("关于这项使用的异议 {id} 尚在处理中，将会得到答复")
                }
                ObjectionFault::TooMany { max } => {
                    format!("您已有 {max} 项异议在处理中；答复之前暂不受理新的异议")
                }
                ObjectionFault::Closed { id } => format!("异议 {id} 已办结"),
            },
            Self::ObjectionNotStored => "目前无法读写异议；未做任何变更，请稍后再试".into(),
            Self::SharingRequestNotFound { id } => format!("没有共享申请 {id}"),
            Self::Sharing(f) => match f {
                SharingFault::NotYours { what } => format!("无权办理此步骤（{what}）"),
                SharingFault::NotWaiting { id, state } => {
                    format!("共享申请 {id} 当前为 {state}，不在此环节")
                }
                SharingFault::UnknownDecision { decision } => {
                    format!("办理结果“{decision}”无效：应为 approve、refuse 或 return")
                }
                SharingFault::MoreThanAsked { field } => {
                    format!("字段 {field} 不在申请之列：批准只能少于申请，不能多于申请")
                }
                SharingFault::ReasonRequired { decision } => {
                    format!("{decision} 须说明理由（1 到 500 个字符）")
                }
                SharingFault::NotToBeShared { dataset } => {
                    format!("数据集 {dataset} 不予共享，不能申请")
                }
                SharingFault::RenewsGone { grant, changed } => match changed {
                    None => format!("本申请续期的授权 {grant} 已不再有效（已撤销或删除），申请不予批准，请重新申请"),
                    Some(v) => format!("本申请续期的授权 {grant} 在申请后已变更（现为版本 {v}），申请不予批准，请按现行授权重新申请"),
                },
            },
            Self::SharingNotStored => "目前无法读写共享申请；未做任何变更，请稍后再试".into(),
            Self::DataObjectionNotFound { id } => format!("没有您可查看的数据疑义 {id}"),
            Self::DataObjectionNotYours { what } => format!("无权办理（{what}）"),
            Self::DataObjectionAnswered { id } => format!("数据疑义 {id} 已答复"),
            Self::InvalidDataObjection { what } => format!("数据疑义无效：{what}"),
            Self::DataObjectionNotStored => "目前无法读写数据疑义；未做任何变更，请稍后再试".into(),
            Self::NotACluster => {
                "策略版本在集群模式下保存在 PostgreSQL 中；单节点请读取 /v1/admin/history".into()
            }
            Self::RetentionNotSet => {
                "未设置 audit.retention_days：日志全部保留，不清理任何事件".into()
            }
            Self::DepartmentNotFound { id } => format!("部门 {id} 不在 departments.toml 中"),
            Self::CannotSuspendOperator => "其管理员必须始终能够恢复其他部门".into(),
            Self::SuspensionNotStored(e) => format!("暂停状态无法写入（{e}）；未做任何变更"),
            Self::InvalidRevocation(fault) => match fault {
                RevocationFault::Time { member, reason } => {
                    format!("{member}：时间无效（{reason}）")
                }
                RevocationFault::Expiry { shortest_secs } => format!(
                    "expires 须至少在 {shortest_secs} 秒之后（已配置签发方的令牌最长有效期），且不超过一年"
                ),
                RevocationFault::Target => {
                    "请指明 jti，或 sub（可附 issued_before）；各为 1 到 128 个可打印字符".into()
                }
            },
            Self::InvalidReason => "请给出 1 到 500 个字符的理由".into(),
            Self::IdMismatch { kind, body, path } => {
                format!("请求体指明的{} 是 {body}，路径中是 {path}", kind.zh())
            }
            Self::EntryNotFound { kind, id } => format!("没有{} {id}", kind.zh()),
            Self::NoChange { kind, id } => format!("提交的{} {id} 与现行内容相同：未保存，也未生成新版本", kind.zh()),
            Self::VersionNotFound { grant, version } => {
                format!("变更历史中没有授权 {grant} 的第 {version} 版")
            }
            Self::PreconditionRequired => {
                "请在 If-Match 中发送 GET 得到的 ETag，以免覆盖他人的变更".into()
            }
            Self::PreconditionFailed(p) => match p {
                Precondition::Exists => "发送了 If-None-Match: *，但条目已存在".into(),
                Precondition::Changed => {
                    "条目在您读取后已被修改；请重新 GET，重做修改并发送新的 ETag".into()
                }
                Precondition::Missing => "发送了 If-Match，但条目不存在".into(),
            },
            Self::InvalidPolicy { errors } => format!(
                "{} 个问题；未做任何变更：{}",
                errors.len(),
                errors.join("；")
            ),
            Self::DatasetInUse { dataset, grants } => format!(
                "数据集 {dataset} 仍被授权 {} 使用；请先修改或删除这些授权",
                grants.join("、")
            ),
            Self::DatasetNotEmbedded { dataset } => format!(
                "数据集 {dataset} 由数据所有部门的系统提供（provider kind http），网关不保存其记录，无从导入"
            ),
            Self::InvalidRecords { errors } => format!(
                "未导入任何记录：{} 行有误（errors 中最多列出 100 行）：{}",
                errors.len(),
                errors.iter().take(3).cloned().collect::<Vec<_>>().join("；")
            ),
            Self::RecordsMediaType => "请以 application/x-ndjson（每行一个 JSON 对象）或 text/csv（含表头行，列表用 ; 分隔）发送记录".into(),
            Self::ImportTooLarge { limit } => {
                format!("导入的数据最多读取 limits.max_import_bytes（{limit} 字节）；未导入任何记录")
            }
            Self::RecordsNotStored(e) => format!("记录无法保存（{e}）；现行记录未变"),
            Self::BackupFailed(e) => format!(
                "无法写出备份（{e}）；未做任何变更。请检查数据目录的剩余空间：备份先写入该目录再发送"
            ),
            Self::BackupKeysRefused => "backup.allow_keys 为 false：通过接口取得的备份不含密钥。请取不含密钥的备份，并以本机权限从数据目录复制密钥".into(),
            Self::PolicyWriteFailed => "变更已记录但无法写入；现行策略未变".into(),
            Self::PolicyChangedElsewhere => {
                "准备此变更时另一节点提交了策略变更；本节点已执行新策略：请重新读取条目后重试"
                    .into()
            }
            Self::HistoryReadFailed(Some(e)) => format!("变更历史无法读取：{e}"),
            Self::HistoryReadFailed(None) => "记录的版本无法读取".into(),
        }
    }
}

fn or_list(values: &[&str], or: &str) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push_str(if i + 1 == values.len() { or } else { ", " });
        }
        out.push_str(v);
    }
    out
}

fn auth_zh(e: &AuthError) -> String {
    match e {
        AuthError::Missing => "没有 bearer 令牌：请发送 Authorization: Bearer <JWT>".into(),
        AuthError::NotBearer => "Authorization 请求头必须是单个“Bearer <JWT>”".into(),
        AuthError::TooLarge(n) => format!("令牌长度超过 {n} 字节"),
        AuthError::Malformed => "令牌不是格式正确的 JWT".into(),
        AuthError::UnknownIssuer => "令牌的签发方不受信任".into(),
        AuthError::AlgorithmNotAllowed(alg) => format!("不接受此签发方使用算法 {alg}"),
        AuthError::BadSignature => "令牌签名验证失败".into(),
        AuthError::WrongAudience => "令牌的受众不是本网关".into(),
        AuthError::Expired => "令牌已过期".into(),
        AuthError::NotYetValid => "令牌尚未生效".into(),
        AuthError::BadClaim(what) => format!("令牌声明无效：{what}"),
        AuthError::UnknownDepartment => "令牌所属部门未登记".into(),
        AuthError::Revoked => "令牌已被吊销".into(),
        AuthError::OutOfScope(what) => format!("签发方无权为此作证：{what}"),
        AuthError::UnknownKey => "令牌的密钥标识不在其签发方公布的密钥中".into(),
        AuthError::KeysUnavailable => "目前无法获取令牌签发方公布的密钥".into(),
    }
}

fn deny_en(d: &DenyDetail) -> String {
    match d {
        DenyDetail::UnknownDataset { dataset } => format!(
            "dataset {dataset} is not in the catalog; GET /v1/catalog lists the datasets you may use"
        ),
        DenyDetail::NotShared { dataset } => format!("dataset {dataset} is not shared (不予共享)"),
        DenyDetail::UnknownField { field, dataset } => {
            format!("field \"{field}\" is not a field of dataset {dataset}")
        }
        DenyDetail::NoGrant { consumer, dataset } => {
            format!("no grant gives department {consumer} access to dataset {dataset}")
        }
        DenyDetail::NoGrantApplies => "no grant applies".into(),
        DenyDetail::PurposeNotGranted {
            purpose,
            consumer,
            dataset,
        } => format!(
            "purpose \"{purpose}\" is not granted to department {consumer} for dataset {dataset}"
        ),
        DenyDetail::RoleNotGranted { dataset, purpose } => {
            format!("none of your roles may use dataset {dataset} for purpose \"{purpose}\"")
        }
        DenyDetail::OperationNotGranted {
            operation,
            dataset,
            purpose,
        } => format!(
            "operation {} is not granted on dataset {dataset} for purpose \"{purpose}\"",
            operation.as_str()
        ),
        DenyDetail::NotYetInForce { grant, from } => {
            format!("grant {grant} is not in force until {from}")
        }
        DenyDetail::Expired { grant, until } => format!("grant {grant} expired after {until}"),
        DenyDetail::NoneInForce => "no grant is in force".into(),
        DenyDetail::CaseRefRequired { grant } => format!(
            "grant {grant} requires a case reference (办件编号): send it in the X-Case-Ref header"
        ),
        DenyDetail::CaseRefFormat { grant, pattern } => {
            format!("grant {grant} requires case references of the form {pattern}")
        }
        DenyDetail::FieldVerifyOnly { field } => {
            format!("field \"{field}\" may only be checked with verify, not disclosed")
        }
        DenyDetail::FieldMasked { field } => format!(
            "field \"{field}\" is granted only masked, and a masked field cannot be verified: its value is what the mask hides"
        ),
        DenyDetail::FieldNotGranted {
            field,
            dataset,
            purpose,
        } => format!(
            "field \"{field}\" of dataset {dataset} is not granted for purpose \"{purpose}\""
        ),
        DenyDetail::NoFieldsGranted {
            grant,
            dataset,
            operation,
        } => format!(
            "grant {grant} discloses no field of dataset {dataset} by {}",
            operation.as_str()
        ),
    }
}

fn deny_zh(d: &DenyDetail) -> String {
    let op = |o: crate::policy::model::Operation| match o {
        crate::policy::model::Operation::Lookup => "查询",
        crate::policy::model::Operation::Verify => "核验",
        crate::policy::model::Operation::Batch => "批量查询",
    };
    match d {
        DenyDetail::UnknownDataset { dataset } => {
            format!("数据集 {dataset} 不在目录中；GET /v1/catalog 列出您可使用的数据集")
        }
        DenyDetail::NotShared { dataset } => format!("数据集 {dataset} 不予共享"),
        DenyDetail::UnknownField { field, dataset } => {
            format!("字段“{field}”不是数据集 {dataset} 的字段")
        }
        DenyDetail::NoGrant { consumer, dataset } => {
            format!("没有授权允许部门 {consumer} 访问数据集 {dataset}")
        }
        DenyDetail::NoGrantApplies => "没有适用的授权".into(),
        DenyDetail::PurposeNotGranted {
            purpose,
            consumer,
            dataset,
        } => format!("用途“{purpose}”未授予部门 {consumer} 用于数据集 {dataset}"),
        DenyDetail::RoleNotGranted { dataset, purpose } => {
            format!("您的角色均无权为用途“{purpose}”使用数据集 {dataset}")
        }
        DenyDetail::OperationNotGranted {
            operation,
            dataset,
            purpose,
        } => format!(
            "数据集 {dataset} 在用途“{purpose}”下未授予{}操作",
            op(*operation)
        ),
        DenyDetail::NotYetInForce { grant, from } => format!("授权 {grant} 自 {from} 起生效"),
        DenyDetail::Expired { grant, until } => format!("授权 {grant} 已于 {until} 后失效"),
        DenyDetail::NoneInForce => "没有有效的授权".into(),
        DenyDetail::CaseRefRequired { grant } => {
            format!("授权 {grant} 要求提供办件编号：请在 X-Case-Ref 请求头中发送")
        }
        DenyDetail::CaseRefFormat { grant, pattern } => {
            format!("授权 {grant} 要求办件编号符合格式 {pattern}")
        }
        DenyDetail::FieldVerifyOnly { field } => {
            format!("字段“{field}”只能通过核验检查，不予提供")
        }
        DenyDetail::FieldMasked { field } => {
            format!("字段“{field}”仅以脱敏形式授权，脱敏字段不可核验：其值正是脱敏所隐藏的")
        }
        DenyDetail::FieldNotGranted {
            field,
            dataset,
            purpose,
        } => format!("数据集 {dataset} 的字段“{field}”未为用途“{purpose}”授权"),
        DenyDetail::NoFieldsGranted {
            grant,
            dataset,
            operation,
        } => format!(
            "授权 {grant} 通过{}不提供数据集 {dataset} 的任何字段",
            op(*operation)
        ),
    }
}

/// docs/integrating.md's table of problem types, checked against the enum.
pub fn documented_slugs(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in doc.lines().filter(|l| l.starts_with("| `/problems/")) {
        let cell = line.split('|').nth(1).unwrap_or("");
        for part in cell.split(',') {
            let slug = part
                .trim()
                .trim_matches('`')
                .trim_start_matches("/problems/");
            if !slug.is_empty() {
                out.push(slug.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_unique_and_each_type_has_both_titles() {
        let mut seen = std::collections::HashSet::new();
        for t in ProblemType::ALL {
            assert!(seen.insert(t.slug()), "{} twice", t.slug());
            assert!(!t.title(Lang::En).is_empty() && !t.title(Lang::Zh).is_empty());
            assert!(t.slug().chars().all(|c| c.is_ascii_lowercase() || c == '-'));
            assert_eq!(ProblemType::from_slug(t.slug()), Some(*t));
        }
    }

    #[test]
    fn the_docs_list_every_problem_type_and_no_other() {
        let docs = include_str!("../docs/integrating.md");
        let documented = documented_slugs(docs);
        for t in ProblemType::ALL {
            assert!(
                documented.iter().any(|d| d == t.slug()),
                "/problems/{} is missing from docs/integrating.md's table",
                t.slug()
            );
        }
        for d in &documented {
            assert!(
                ProblemType::from_slug(d).is_some(),
                "docs/integrating.md lists /problems/{d}, which the gateway never answers"
            );
        }
    }

    #[test]
    fn the_docs_give_each_problem_its_status() {
        let docs = include_str!("../docs/integrating.md");
        for line in docs.lines().filter(|l| l.starts_with("| `/problems/")) {
            let cells: Vec<&str> = line.split('|').collect();
            let slugs = documented_slugs(line);
            let statuses: Vec<u16> = cells[2]
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            for (i, slug) in slugs.iter().enumerate() {
                let t = ProblemType::from_slug(slug).unwrap_or(ProblemType::NoSuchRoute);
                let documented = statuses.get(i).or(statuses.last()).copied();
                assert_eq!(
                    documented,
                    Some(t.status().as_u16()),
                    "docs/integrating.md: /problems/{slug}"
                );
            }
        }
    }

    #[test]
    fn accept_language_chooses_chinese_only_when_it_is_preferred() {
        for (header, want) in [
            (None, Lang::En),
            (Some(""), Lang::En),
            (Some("zh"), Lang::Zh),
            (Some("zh-CN"), Lang::Zh),
            (Some("ZH-Hans-CN"), Lang::Zh),
            (Some("zh-CN,zh;q=0.9,en;q=0.8"), Lang::Zh),
            (Some("en-US,en;q=0.9,zh-CN;q=0.8"), Lang::En),
            (Some("en;q=0.5, zh;q=0.6"), Lang::Zh),
            (Some("zh;q=0.5, en;q=0.5"), Lang::Zh),
            (Some("en;q=0.5, zh;q=0.5"), Lang::En),
            (Some("zh;q=0"), Lang::En),
            (Some("fr-FR, de"), Lang::En),
            (Some("*"), Lang::En),
            (Some("zh;q=nonsense"), Lang::Zh),
            (Some(";;;,,,"), Lang::En),
        ] {
            assert_eq!(Lang::negotiate(header), want, "{header:?}");
        }
    }

    #[test]
    fn chinese_details_are_chinese() {
        let samples = [
            Problem::PurposeRequired,
            Problem::AuditUnavailable,
            Problem::BatchEmpty,
            Problem::DepartmentSuspended {
                dept: "renshe".into(),
                since: "2026-12-01 08:00".into(),
            },
        ];
        for p in samples {
            let zh = p.detail(Lang::Zh);
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{zh}"
            );
            assert_ne!(zh, p.detail(Lang::En));
        }
    }
}
