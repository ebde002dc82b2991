//! The pages problem types name: every refusal's `type` is
//! `/problems/<slug>`, and `GET /problems/<slug>` says, in Chinese and in
//! English (the language `Accept-Language` prefers first), what happened
//! and what to do. Static, public and unaudited, like `/openapi.json`:
//! they say nothing about any request.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::gateway::Gateway;
use crate::problem::{Lang, ProblemType};

/// `GET /problems/{slug}`.
pub(crate) fn router() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new().routes(routes!(page))
}

/// What a caller does about a problem of type `t`: English, then Chinese.
/// Every type has its line (the match is exhaustive).
#[allow(clippy::too_many_lines)]
pub fn advice(t: ProblemType) -> [&'static str; 2] {
    use ProblemType as T;
    match t {
        T::TokenMissing => [
            "Send a bearer token from your identity service: Authorization: Bearer <JWT>.",
            "请携带身份认证服务签发的令牌：Authorization: Bearer <JWT>。",
        ],
        T::TokenInvalid => [
            "Get a new token from your identity service; the detail says what was wrong with this one (signature, issuer, audience, algorithm, a claim). Do not retry the same token.",
            "请向身份认证服务重新申请令牌；detail 说明了此令牌的问题（签名、签发方、受众、算法或某个声明）。不要用同一令牌重试。",
        ],
        T::TokenExpired => [
            "Get a fresh token and send the request again.",
            "请获取新的令牌后重新发送请求。",
        ],
        T::TokenRevoked => [
            "An administrator revoked this token (or every token of its subject issued before a time). Get a new token; if it is refused too, ask the exchange's operator why.",
            "管理员已吊销此令牌（或该主体在某时间之前签发的全部令牌）。请获取新令牌；如仍被拒绝，请向交换平台运营方询问原因。",
        ],
        T::UnknownDepartment => [
            "The department in the token is not registered at this exchange. Check the department claim your identity service sets, or ask the operator to register the department.",
            "令牌中的部门未在本交换平台登记。请检查身份认证服务设置的部门声明，或请运营方登记该部门。",
        ],
        T::IssuerOutOfScope => [
            "This token's issuer may not vouch for its department or for a staff role it carries. Use a token from the issuer that serves your department.",
            "此令牌的签发方无权为其部门或所含的工作人员角色作证。请使用为本部门服务的签发方签发的令牌。",
        ],
        T::CertificateDepartmentMismatch => [
            "Connect with your own department's client certificate: its common name must be the department in the token.",
            "请使用本部门的客户端证书连接：证书的通用名必须与令牌中的部门一致。",
        ],
        T::CertificateBindingMismatch => [
            "The token is bound to another client certificate (cnf.x5t#S256). Connect with that certificate, or get a token bound to the one you use.",
            "令牌绑定的是另一张客户端证书（cnf.x5t#S256）。请使用该证书连接，或申请绑定到当前证书的令牌。",
        ],
        T::ClientCertificateRevoked => [
            "Your client certificate was revoked or its revocation list is out of date. Request a new certificate from the exchange's CA and connect again.",
            "客户端证书已被吊销，或其吊销列表已过期。请向交换平台的证书机构申请新证书后重新连接。",
        ],
        T::TokenKeysUnavailable => [
            "The gateway cannot fetch your token issuer's keys right now. Retry after Retry-After; tell the exchange's operator if it lasts.",
            "网关目前无法获取令牌签发方的密钥。请在 Retry-After 之后重试；如持续发生，请告知交换平台运营方。",
        ],
        T::InvalidHeader => [
            "Send each header once, as text; Authorization as a single 'Bearer <JWT>'. The detail names the header.",
            "每个请求头只发送一次，且为文本；Authorization 必须是单个“Bearer <JWT>”。detail 指出了是哪个请求头。",
        ],
        T::HeadersTooLarge => [
            "Send smaller headers (a shorter token, fewer or shorter headers); the detail gives the limit.",
            "请减小请求头（更短的令牌，更少或更短的请求头）；detail 给出了上限。",
        ],
        T::PurposeRequired => [
            "Name the purpose of the query in X-Purpose, with one of the purpose codes your grant allows (GET /v1/catalog lists them).",
            "请在 X-Purpose 中说明查询用途，使用授权允许的用途代码（GET /v1/catalog 列出了这些代码）。",
        ],
        T::InvalidPurpose => [
            "Use a purpose code: lowercase letters, digits and underscores, starting with a letter.",
            "用途代码只能由小写字母、数字和下划线组成，并以字母开头。",
        ],
        T::InvalidCaseRef => [
            "Send the case reference (办件编号) in X-Case-Ref: printable text, a Chinese document number percent-encoded as UTF-8.",
            "请在 X-Case-Ref 中发送办件编号：可打印文本；中文文号请按 UTF-8 进行百分号编码。",
        ],
        T::InvalidDatasetId => [
            "Use a dataset id from GET /v1/catalog, such as gongan.hukou.",
            "请使用 GET /v1/catalog 中的数据集标识，例如 gongan.hukou。",
        ],
        T::InvalidResidentId => [
            "Send an 18-character resident ID number with a valid check digit.",
            "请发送校验位正确的 18 位公民身份号码。",
        ],
        T::InvalidFieldList => [
            "List field names from the catalog, comma-separated, within the limit the detail gives.",
            "请列出目录中的字段名，用逗号分隔，数量不超过 detail 给出的上限。",
        ],
        T::InvalidDepartment => [
            "Use a department id: lowercase letters, digits and underscores, as in the catalog.",
            "请使用目录中的部门标识：小写字母、数字和下划线。",
        ],
        T::InvalidGrantId => [
            "Use a grant id as GET /v1/admin/grants lists them.",
            "请使用 GET /v1/admin/grants 列出的授权标识。",
        ],
        T::InvalidQuery => [
            "Correct the query parameter the detail names (its form or range).",
            "请更正 detail 指出的查询参数（格式或取值范围）。",
        ],
        T::InvalidPath => [
            "Correct the path: its segments must be valid UTF-8 after decoding.",
            "请更正路径：解码后的每一段都必须是有效的 UTF-8。",
        ],
        T::InvalidBody => [
            "Send the body the operation describes in /openapi.json: valid JSON, no unknown members. The detail says where it went wrong.",
            "请按 /openapi.json 中的说明发送请求体：有效的 JSON，且不含未知成员。detail 指出了出错的位置。",
        ],
        T::UnsupportedMediaType => [
            "Send the body with the Content-Type the operation accepts (application/json, or what /openapi.json names).",
            "请使用该操作接受的 Content-Type 发送请求体（application/json，或 /openapi.json 中所列类型）。",
        ],
        T::BodyTooLarge => [
            "Send a smaller body: split a batch, within the limit the detail gives.",
            "请发送更小的请求体：拆分批量请求，不超过 detail 给出的上限。",
        ],
        T::RequestTimeout => [
            "Send the whole request within the time allowed; check the network between your system and the gateway.",
            "请在允许的时间内发送完整请求；并检查贵方系统与网关之间的网络。",
        ],
        T::NoSuchRoute => [
            "Check the path against /openapi.json or docs/integrating.md.",
            "请对照 /openapi.json 或 docs/integrating.md 检查路径。",
        ],
        T::MethodNotAllowed => [
            "Use a method the Allow header lists for this path.",
            "请使用 Allow 响应头为此路径列出的方法。",
        ],
        T::InvalidCondition => [
            "Correct the verify condition the detail names: a field the grant lets you verify, an operator its type allows, a value of its type.",
            "请更正 detail 指出的核验条件：授权允许核验的字段、该字段类型允许的比较方式、与类型相符的值。",
        ],
        T::PredicateNotGranted => [
            "Ask only the comparisons your grant allows for the field (GET /v1/catalog lists them), or ask the owning department for a grant that allows this one.",
            "请只使用授权对该字段允许的比较（GET /v1/catalog 列出），或向数据所有部门申请允许此比较的授权。",
        ],
        T::VerifyBudgetExhausted => [
            "This resident has been verified as often as the grant allows in its period. Wait for Retry-After, or ask the resident for the material.",
            "该居民在授权周期内的核验次数已用完。请等待 Retry-After 之后再试，或请居民提供材料。",
        ],
        T::BatchTooLarge => [
            "Send at most the number of residents the detail gives per batch; split larger ones.",
            "每批最多发送 detail 给出的居民数量；请拆分更大的批次。",
        ],
        T::IdempotencyKeyReused => [
            "A retry must repeat the first request exactly (dataset, resident, purpose, case reference, body) under its key; a new request takes a new key (a UUID per request is usual).",
            "重试须在同一幂等键下原样重复首次请求（数据集、居民、用途、办件编号、请求体）；新请求须使用新的幂等键（通常每个请求一个 UUID）。",
        ],
        T::OtherDepartmentsCase => [
            "Ask for your own department's cases (leave out consumer, or name your own department). A privacy officer of the operator department sees any department's.",
            "请查询本部门的办件（不填 consumer，或填写本部门）。运营部门的隐私监督员可以查看任何部门的办件。",
        ],
        T::IdempotencyKeyInFlight => [
            "Wait for Retry-After and send the same request again under the same key: it is then answered as a replay, without charging the quota again.",
            "请等待 Retry-After 之后，以同一幂等键原样再次发送：届时按重放应答，不再计入配额。",
        ],
        T::UnknownDataset => [
            "The dataset is not in the catalog; GET /v1/catalog lists the datasets you may use.",
            "该数据集不在目录中；GET /v1/catalog 列出了可使用的数据集。",
        ],
        T::UnknownField => [
            "Name only fields of the dataset as the catalog lists them.",
            "请只使用目录中列出的该数据集字段。",
        ],
        T::CaseRefRequired => [
            "This grant requires a case reference: send X-Case-Ref with the case (办件) the query serves.",
            "此授权要求提供办件编号：请在 X-Case-Ref 中发送本次查询所服务的办件。",
        ],
        T::CaseRefFormat => [
            "Send the case reference in the form the grant requires (the detail gives the pattern).",
            "请按授权要求的格式发送办件编号（detail 给出了格式）。",
        ],
        T::DatasetNotShared => [
            "The owning department does not share this dataset (不予共享). It cannot be obtained through the exchange; ask the resident or the owner.",
            "数据所有部门不共享此数据集（不予共享）。无法通过交换平台获取；请向居民或数据所有部门索取。",
        ],
        T::NoGrant => [
            "Your department has no grant for this dataset. Apply to the owning department for one (a sharing agreement), then retry.",
            "贵部门没有此数据集的授权。请向数据所有部门申请授权（共享协议）后再试。",
        ],
        T::PurposeNotGranted => [
            "Use a purpose the grant allows (GET /v1/catalog lists them); a new purpose needs a new or amended grant.",
            "请使用授权允许的用途（GET /v1/catalog 列出）；新的用途需要新增或修改授权。",
        ],
        T::RoleNotGranted => [
            "The token's roles are not among those the grant allows. Use an account with the role, or ask for the grant to include it.",
            "令牌中的角色不在授权允许的范围内。请使用具有该角色的账号，或申请将该角色纳入授权。",
        ],
        T::OperationNotGranted => [
            "The grant does not allow this operation (lookup, verify or batch). Use the one it allows, or ask for an amended grant.",
            "授权不允许此操作（查询、核验或批量）。请使用授权允许的操作，或申请修改授权。",
        ],
        T::GrantNotInForce => [
            "The grant is not in force today (before its start, after its end, or outside its days). Wait for it, or ask for a renewal.",
            "授权今日不在有效期内（未到开始日期、已过结束日期或不在允许的日期）。请等待生效，或申请续期。",
        ],
        T::FieldVerifyOnly => [
            "This field may only be verified, never read: ask POST /v1/verify whether it meets a condition.",
            "此字段只能核验、不能读取：请通过 POST /v1/verify 核验其是否满足条件。",
        ],
        T::FieldNotGranted => [
            "Ask only for fields the grant gives (GET /v1/catalog lists them), or ask for an amended grant.",
            "请只请求授权给予的字段（GET /v1/catalog 列出），或申请修改授权。",
        ],
        T::FieldMaskedNotVerifiable => [
            "The grant gives this field masked only, so it cannot be verified exactly. Verify another field, or ask for a grant that allows it.",
            "授权对此字段只给出掩码值，因此无法精确核验。请核验其他字段，或申请允许核验的授权。",
        ],
        T::NoFieldsGranted => [
            "None of the fields asked for are granted; ask for fields the catalog lists for you.",
            "所请求的字段均未获授权；请请求目录中列出的可用字段。",
        ],
        T::ResidentNotFound => [
            "The owning department holds no record of this resident. Check the ID number; otherwise ask the resident for the material.",
            "数据所有部门没有该居民的记录。请核对身份号码；否则请居民提供材料。",
        ],
        T::RateLimited => [
            "Your department or grant sent more than its limit allows. Wait for Retry-After, then send more slowly.",
            "贵部门或授权的请求超出了限额。请等待 Retry-After 之后再以更低频率发送。",
        ],
        T::UnauthenticatedRateLimited => [
            "Too many requests without a valid token came from your address. Fix the token, then wait for Retry-After.",
            "来自贵方地址的无有效令牌请求过多。请先解决令牌问题，再等待 Retry-After。",
        ],
        T::DepartmentSuspended => [
            "The exchange's operator suspended your department's access (an emergency stop). Contact the operator; requests are refused until it is resumed.",
            "交换平台运营方已暂停贵部门的访问（紧急停止）。请联系运营方；恢复之前所有请求都会被拒绝。",
        ],
        T::RoleRequired => [
            "This operation is for a role of the operator department's staff (privacy officer, policy administrator); use an account that holds it.",
            "此操作仅限运营部门具有相应角色的工作人员（隐私官、策略管理员）；请使用具有该角色的账号。",
        ],
        T::ProviderFailed => [
            "The owning department's data could not be read. Retry later; tell the exchange's operator if it lasts.",
            "无法读取数据所有部门的数据。请稍后重试；如持续发生，请告知交换平台运营方。",
        ],
        T::UpstreamUnavailable => [
            "The owning department's system is unavailable. Retry after Retry-After.",
            "数据所有部门的系统不可用。请在 Retry-After 之后重试。",
        ],
        T::UpstreamTimeout => [
            "The owning department's system did not answer in time. Retry later.",
            "数据所有部门的系统未能及时应答。请稍后重试。",
        ],
        T::UpstreamInvalidAnswer => [
            "The owning department's system answered with data that does not match the catalog; nothing was disclosed. Tell the exchange's operator.",
            "数据所有部门的系统返回的数据与目录不符，未披露任何数据。请告知交换平台运营方。",
        ],
        T::AuditUnavailable => [
            "The audit log cannot be written, so nothing is answered. Retry after Retry-After.",
            "审计日志无法写入，因此不作任何应答。请在 Retry-After 之后重试。",
        ],
        T::AuditReadFailed => [
            "The audit log could not be read for this request. Retry; tell the operator if it lasts.",
            "本次请求无法读取审计日志。请重试；如持续发生，请告知运营方。",
        ],
        T::ClusterUnavailable => [
            "The cluster's shared store cannot be reached now. Retry after Retry-After, or ask this node (scope=node) for its own part.",
            "目前无法访问集群共享存储。请在 Retry-After 之后重试，或向本节点查询其自身部分（scope=node）。",
        ],
        T::EventNotFound => [
            "No audit event has this sequence number (or it was pruned under the retention rules).",
            "没有此序号的审计事件（或已按保留规则清理）。",
        ],
        T::FlagNotFound => [
            "Mark a flag the statistics list (GET /v1/audit/stats), by its id.",
            "请按统计结果（GET /v1/audit/stats）所列标识复核异常标记。",
        ],
        T::DisclosureNotFound => [
            "Object to a use your record lists (GET /v1/me/disclosures), by its node and seq.",
            "请针对您的记录（GET /v1/me/disclosures）所列的某项使用提出异议，注明其 node 与 seq。",
        ],
        T::ObjectionNotFound => [
            "Name an objection the list shows (GET /v1/me/objections, or GET /v1/audit/objections for officers).",
            "请指定列表中的异议（居民：GET /v1/me/objections；隐私官：GET /v1/audit/objections）。",
        ],
        T::ObjectionConflict => [
            "Wait for the open objection to be answered; a closed objection takes no further answer.",
            "请等待尚在处理的异议得到答复；已办结的异议不再答复。",
        ],
        T::ObjectionNotStored => [
            "The gateway could not keep the objection or its answer; nothing changed. Try again later; the operator finds the cause in the gateway's log.",
            "网关无法保存异议或其答复，未做任何变更。请稍后再试；运营方可在网关日志中查到原因。",
        ],
        T::ReviewNotStored => [
            "The review mark was recorded in the audit log but not kept; mark the flag again later.",
            "复核标记已记入审计日志但未能保存；请稍后再次标记。",
        ],
        T::SharingRequestNotFound => [
            "Name a request GET /v1/sharing/requests lists.",
            "请指定 GET /v1/sharing/requests 所列的申请。",
        ],
        T::SharingNotYours => [
            "The data authority (data_authority of the operator department) reviews requests; a data_steward of the owning department answers them; the consuming department files them.",
            "共享申请由使用部门提出，由数据主管部门（运营部门的 data_authority）审核，由数据所属部门的 data_steward 答复。",
        ],
        T::SharingRequestState => [
            "Read the request again (GET /v1/sharing/requests): it has moved on, or is not yet at this step.",
            "请重新查看该申请（GET /v1/sharing/requests）：它已进入其他环节，或尚未到达此环节。",
        ],
        T::InvalidSharingDecision => [
            "Send decision approve, refuse or return; an approval may name fewer fields than asked, never others.",
            "办理结果应为 approve、refuse 或 return；批准时可以少于申请的字段，不能增加。",
        ],
        T::SharingNotStored => [
            "The gateway could not keep the request; nothing changed. Try again later; the operator finds the cause in the gateway's log.",
            "网关无法保存该申请，未做任何变更。请稍后再试；运营方可在网关日志中查到原因。",
        ],
        T::RenewedGrantChanged => [
            "The grant the renewal names was revoked, removed or changed after the request was filed; the request is refused. File a new request against the grant as it now is (GET /v1/catalog).",
            "续期申请所针对的授权在申请后已被撤销、删除或变更，申请不予批准。请按现行授权（GET /v1/catalog）重新申请。",
        ],
        T::DataObjectionNotFound => [
            "Name a data objection GET /v1/objections lists for you.",
            "请指定 GET /v1/objections 为您列出的数据疑义。",
        ],
        T::DataObjectionNotYours => [
            "A department reports doubtful data only in a field a grant in force shows one of the caller's roles; a data_steward of the owning department answers.",
            "只能对本部门在有效授权下、以本人角色可见的字段提出疑义；由数据所属部门的 data_steward 答复。",
        ],
        T::DataObjectionAnswered => [
            "Read the objection again (GET /v1/objections): it is answered; report again if the answer does not settle it.",
            "请重新查看该疑义（GET /v1/objections）：它已答复；如答复不能解决问题，可再次提出。",
        ],
        T::InvalidDataObjection => [
            "Name a dataset and one of its fields, a valid resident ID and what seems wrong (1 to 1000 characters, no values); an answer is corrected, confirmed or not_ours.",
            "请填写数据集及其字段、有效的身份证号和疑义说明（1 到 1000 个字符，不含数据值）；答复应为 corrected、confirmed 或 not_ours。",
        ],
        T::DataObjectionNotStored => [
            "The gateway could not keep the objection or its answer; nothing changed. Try again later; the operator finds the cause in the gateway's log.",
            "网关无法保存该疑义或其答复，未做任何变更。请稍后再试；运营方可在网关日志中查到原因。",
        ],
        T::NotACluster => [
            "This gateway is a single node; the cluster routes apply only in cluster mode.",
            "本网关为单节点；集群相关路由仅适用于集群模式。",
        ],
        T::RetentionNotSet => [
            "The gateway keeps its whole log: set audit.retention_days (at least 183) in its configuration before pruning.",
            "网关保留全部日志：请先在配置中设置 audit.retention_days（至少 183 天）再清理。",
        ],
        T::DepartmentNotFound => [
            "Name a department registered in the policy (GET /v1/admin/departments).",
            "请指定策略中已登记的部门（GET /v1/admin/departments）。",
        ],
        T::CannotSuspendOperator => [
            "The operator department cannot be suspended (its staff would lose the means to resume it).",
            "运营部门不能被暂停（否则其工作人员将无法恢复访问）。",
        ],
        T::SuspensionNotStored => [
            "The stop could not be stored durably, so it is not in force. Retry; tell the operator if it lasts.",
            "紧急停止无法持久保存，因此未生效。请重试；如持续发生，请告知运营方。",
        ],
        T::InvalidRevocation => [
            "Name exactly one target: a jti, or a sub with an optional issued_before, with expires within its bounds.",
            "请恰好指定一个对象：jti，或 sub（可附 issued_before），expires 须在允许范围内。",
        ],
        T::InvalidReason => [
            "Give a reason of 1 to 500 characters.",
            "请填写 1 至 500 个字符的理由。",
        ],
        T::IdMismatch => [
            "The id in the body must be the id in the path.",
            "请求体中的标识必须与路径中的标识一致。",
        ],
        T::GrantNotFound => [
            "No grant has this id; GET /v1/admin/grants lists them.",
            "没有此标识的授权；GET /v1/admin/grants 列出了全部授权。",
        ],
        T::RevokedTokenNotFound => [
            "No deny-list entry in force has this id (it expired, or was lifted); GET /v1/admin/revoked-tokens lists them with their ids.",
            "拒绝名单中没有此标识的有效条目（已过期或已移除）；GET /v1/admin/revoked-tokens 列出了全部条目及其标识。",
        ],
        T::NoChange => [
            "The entry as sent is the one in force: nothing was saved and no version was made. Change something, or leave it.",
            "提交的内容与现行内容相同：未保存，也未生成新版本。请修改后再保存。",
        ],
        T::DatasetNotFound => [
            "No dataset has this id; GET /v1/admin/datasets lists them.",
            "没有此标识的数据集；GET /v1/admin/datasets 列出了全部数据集。",
        ],
        T::VersionNotFound => [
            "No policy version has this number; the history lists them.",
            "没有此编号的策略版本；历史记录中列出了全部版本。",
        ],
        T::PreconditionRequired => [
            "Send If-Match with the ETag you read, so that another administrator's edit is not overwritten.",
            "请在 If-Match 中携带读取时获得的 ETag，以免覆盖其他管理员的修改。",
        ],
        T::PreconditionFailed => [
            "Someone changed it since you read it: read it again, reapply your edit, and send the new ETag.",
            "读取之后已有人修改：请重新读取、重新修改，并携带新的 ETag 提交。",
        ],
        T::InvalidPolicy => [
            "Correct the errors listed by field; nothing was changed.",
            "请按字段更正所列错误；未作任何更改。",
        ],
        T::DatasetInUse => [
            "Grants still name this dataset (listed in grants); change or delete them first.",
            "仍有授权引用此数据集（见 grants 列表）；请先修改或删除这些授权。",
        ],
        T::DatasetNotEmbedded => [
            "This dataset is answered by its owner's own system; its records are kept there. Import only datasets whose catalog entry has no http provider.",
            "此数据集由数据所有部门的系统提供，记录保存在该系统中。只能导入目录中未配置 http 提供方的数据集。",
        ],
        T::InvalidRecords => [
            "Correct the rows listed in errors (by line: an id_number that is not a valid ID, a field the dataset does not have, a value of the wrong type, an ID twice) and send the whole file again; nothing was imported.",
            "请更正 errors 中按行列出的问题（身份证号无效、数据集没有的字段、类型不符的值、重复的身份证号），然后重新发送整个文件；本次未导入任何记录。",
        ],
        T::BackupFailed => [
            "The gateway's log says why. A backup is written to the data directory before it is sent: make room there (it needs about the size of the backup), then ask again.",
            "原因见网关日志。备份先写入数据目录再发送：请在该目录腾出空间（约为备份的大小）后重试。",
        ],
        T::BackupKeysRefused => [
            "Take the backup without --keys, and copy the keys from the data directory with the machine's own access. To let backups through the API hold them, set backup.allow_keys = true in tongban.toml (whoever holds the checkpoint key can sign over an altered log).",
            "请不带 --keys 取备份，并以本机权限从数据目录复制密钥。若要允许经接口取得的备份包含密钥，请在 tongban.toml 中设置 backup.allow_keys = true（持有检查点密钥者可为被篡改的日志签名）。",
        ],
        T::PolicyWriteFailed => [
            "The change was recorded but could not be applied. Read the policy again before retrying; tell the operator.",
            "更改已记录但未能应用。重试前请重新读取策略；并告知运营方。",
        ],
        T::PolicyChangedElsewhere => [
            "Another node committed a change meanwhile: read it again, reapply your edit, and send it again.",
            "其间另一节点已提交更改：请重新读取、重新修改后再提交。",
        ],
        T::HistoryReadFailed => [
            "The policy history could not be read. Retry; tell the operator if it lasts.",
            "无法读取策略历史。请重试；如持续发生，请告知运营方。",
        ],
    }
}

/// What a problem type means and what to do about it, in Chinese and in
/// English (the language `Accept-Language` prefers first).
#[utoipa::path(
    get,
    path = "/problems/{slug}",
    tag = "ops",
    operation_id = "problem_page",
    params(("slug" = String, Path, description = "The problem type's slug: a refusal's `type` is `/problems/<slug>`")),
    responses(
        (status = 200, description = "The page", body = String, content_type = "text/html"),
        (status = 404, description = "No problem type has this slug", body = String, content_type = "text/html"),
    ),
)]
async fn page(Path(slug): Path<String>, headers: HeaderMap) -> Response {
    let lang = Lang::negotiate(
        headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok()),
    );
    let Some(t) = ProblemType::ALL.iter().copied().find(|t| t.slug() == slug) else {
        return html(
            StatusCode::NOT_FOUND,
            lang,
            "<p>没有这种问题类型。 No problem type has this name.</p>",
        );
    };
    let [en, zh] = advice(t);
    let section = |l: Lang, advice: &str| {
        format!(
            "<section lang=\"{tag}\"><h2>{title}</h2><p>{advice}</p></section>",
            tag = l.tag(),
            title = escape(t.title(l)),
            advice = escape(advice),
        )
    };
    let (first, second) = match lang {
        Lang::Zh => (section(Lang::Zh, zh), section(Lang::En, en)),
        Lang::En => (section(Lang::En, en), section(Lang::Zh, zh)),
    };
    let body = format!(
        "<h1><code>{slug}</code> · HTTP {status}</h1>{first}{second}<p lang=\"zh\">每个拒绝都以 application/problem+json 返回，其 <code>type</code> 不会改变；detail 说明具体原因。</p><p lang=\"en\">Every refusal is application/problem+json; its <code>type</code> never changes, and its detail says what exactly was wrong.</p>",
        slug = t.slug(),
        status = t.status().as_u16(),
    );
    html(StatusCode::OK, lang, &body)
}

/// Text as HTML text.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn html(status: StatusCode, lang: Lang, body: &str) -> Response {
    let page = format!(
        "<!doctype html><html lang=\"{tag}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>tongban · 通办</title><style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.6}}code{{background:#f3f3f3;padding:0 .2em}}</style></head><body>{body}</body></html>",
        tag = lang.tag()
    );
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_LANGUAGE, lang.tag()),
            (header::VARY, "Accept-Language"),
            (header::CACHE_CONTROL, "max-age=86400"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_type_says_what_to_do_in_both_languages() {
        for t in ProblemType::ALL {
            let [en, zh] = advice(*t);
            // English (quoting a Chinese term at most), then Chinese.
            assert!(
                en.len() > 20 && en.starts_with(|c: char| c.is_ascii_uppercase()),
                "{}: {en}",
                t.slug()
            );
            assert!(
                zh.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{}: {zh}",
                t.slug()
            );
        }
    }
}
