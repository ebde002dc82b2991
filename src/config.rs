//! The gateway's configuration: one TOML file (`tongban.toml`), every key
//! documented here with its default. Relative paths are relative to the
//! directory of the file. Secrets are never in the file itself: an HS256
//! secret is named by the environment variable that holds it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::rate_limit::RateSpec;
use crate::server::proxy_protocol::Cidr;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This gateway node's id, recorded in every audit event. Default `node-1`.
    #[serde(default = "default_node_id")]
    pub node_id: String,
    /// Where to listen for HTTPS. Default `127.0.0.1:8443`.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A separate plain-HTTP address that serves only `/metrics` (e.g.
    /// `127.0.0.1:9464`); when set, the HTTPS listener does not serve it.
    /// Default: unset, `/metrics` is on the HTTPS listener.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// The sled database directory (audit log, embedded department data). Default `data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The policy directory (`departments.toml`, `datasets/`, `grants/`). Default `policies`.
    #[serde(default = "default_policies_dir")]
    pub policies_dir: PathBuf,
    /// The department that runs the exchange: its staff hold `privacy_officer`
    /// or `policy_admin`. Default `shujuju` (数据局).
    #[serde(default = "default_operator")]
    pub operator_department: String,
    /// sled page cache size in MiB; memory use is bounded by this plus a constant. Default 256.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: u64,
    /// UTC offset of the gateway's calendar, for grant validity windows. Default `+08:00`.
    #[serde(default = "default_utc_offset")]
    pub utc_offset: CalendarOffset,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Trusted token issuers; a token from any other issuer is refused.
    #[serde(rename = "issuer")]
    pub issuers: Vec<IssuerConfig>,
    /// Rate limits.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The audit log.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Backups taken while serving (`tongban backup`).
    #[serde(default)]
    pub backup: BackupConfig,
    /// The working-day calendar (法定节假日 and 调休).
    #[serde(default)]
    pub calendar: CalendarConfig,
    /// What residents see of their own record, and how often they may ask.
    #[serde(default)]
    pub residents: ResidentsConfig,
    /// The sharing workflow's deadlines.
    #[serde(default)]
    pub sharing: SharingConfig,
    /// Anomaly flags: their thresholds, and where new ones are sent.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Calling departments' own APIs (datasets with an `http` provider).
    #[serde(default)]
    pub upstream: Option<UpstreamConfig>,
    /// Cluster mode: several nodes sharing one policy set in PostgreSQL.
    /// Without this section the gateway is a single node with its policy
    /// directory.
    #[serde(default)]
    pub cluster: Option<ClusterConfig>,
    /// The file this configuration was read from (none when built in
    /// code): read again for the settings that change without a restart.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// Cluster mode (`[cluster]`): the policy set lives in PostgreSQL, every
/// node applies each committed change within a second (LISTEN/NOTIFY, and a
/// periodic version check behind it), and admin edits on any node commit
/// there. Each node keeps its own audit chain in its data directory.
#[derive(Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This node's id, unique in the cluster; recorded in every audit event
    /// (it replaces the top-level `node_id`): 1 to 64 of a-z, 0-9, '.', '_'
    /// and '-'.
    pub node_id: NodeId,
    /// `postgres://user@host:port/db` or the key/value form
    /// (`host=... user=... dbname=...`). A password may be in it, but is
    /// better given by `postgres_password_env`; it is never logged.
    pub postgres_url: String,
    /// The environment variable holding the PostgreSQL password. Default: unset.
    #[serde(default)]
    pub postgres_password_env: Option<String>,
    /// CA certificates (PEM) that PostgreSQL's server certificate must chain
    /// to. With it, connections use TLS (as `sslmode` in the URL asks: `prefer`
    /// by default, `require` to refuse plain connections); without it, the URL
    /// must not ask for TLS. Default: unset.
    #[serde(default)]
    pub postgres_ca: Option<PathBuf>,
    /// Connections in the pool for admin edits and policy reads. Default 4.
    #[serde(default = "default_pool_size")]
    pub pool_size: NonZeroUsize,
    /// Giving up on connecting to PostgreSQL after this long, ms. Default 3000.
    #[serde(default = "default_pg_connect_timeout_ms")]
    pub connect_timeout_ms: NonZeroU64,
    /// Statements that take longer are cancelled by PostgreSQL, ms. Default 5000.
    #[serde(default = "default_statement_timeout_ms")]
    pub statement_timeout_ms: u64,
    /// How often a node compares its policy version with PostgreSQL's, in
    /// case a notification was missed, seconds. Default 5.
    #[serde(default = "default_policy_check_secs")]
    pub policy_check_secs: NonZeroU64,
    /// How often the node reports itself (address, policy version) in
    /// PostgreSQL, seconds; a node silent for three intervals is listed as
    /// not alive. Default 2.
    #[serde(default = "default_heartbeat_secs")]
    pub heartbeat_secs: NonZeroU64,
    /// `redis://host:port/db`: per-department limits and grant quotas are
    /// then counted in Redis for the whole cluster. Without it, or while
    /// Redis cannot be reached, each node enforces its share (the quota
    /// divided by the live nodes). Default: unset.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// The environment variable holding the Redis password. Default: unset.
    #[serde(default)]
    pub redis_password_env: Option<String>,
    /// Longest wait for Redis on a request before the node decides alone, ms. Default 100.
    #[serde(default = "default_redis_timeout_ms")]
    pub redis_timeout_ms: u64,
    /// How far apart two nodes' clocks may be, seconds. Emergency stops are
    /// ordered by the time they were made at their node; two from different
    /// nodes closer than this are taken as simultaneous, and a suspension
    /// wins. Default 5.
    #[serde(default = "default_stop_clock_skew_secs")]
    pub stop_clock_skew_secs: u64,
    /// On a clean stop, how long the node goes on shipping its last events
    /// and its shutdown checkpoint to PostgreSQL before it exits, seconds
    /// (0: not at all). Default 10.
    #[serde(default = "default_shutdown_ship_secs")]
    pub shutdown_ship_secs: u64,
}

fn default_shutdown_ship_secs() -> u64 {
    10
}

fn default_stop_clock_skew_secs() -> u64 {
    5
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("postgres_url", &redact_url(&self.postgres_url))
            .field("postgres_password_env", &self.postgres_password_env)
            .field("postgres_ca", &self.postgres_ca)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("policy_check_secs", &self.policy_check_secs)
            .field("heartbeat_secs", &self.heartbeat_secs)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("redis_password_env", &self.redis_password_env)
            .field("redis_timeout_ms", &self.redis_timeout_ms)
            .field("stop_clock_skew_secs", &self.stop_clock_skew_secs)
            .field("shutdown_ship_secs", &self.shutdown_ship_secs)
            .finish()
    }
}

/// A PostgreSQL connection string with any password replaced by `***`, for
/// messages and logs (URL form `postgres://user:secret@host` and key/value
/// form `password=secret`).
pub fn redact_url(url: &str) -> String {
    let schemes = ["postgres://", "postgresql://", "redis://", "rediss://"];
    if let Some(rest) = schemes
        .iter()
        .find_map(|s| url.strip_prefix(s).map(|r| (*s, r)))
    {
        let (scheme, rest) = rest;
        let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        let authority = match authority.rfind('@') {
            Some(at) => {
                let (userinfo, host) = authority.split_at(at);
                match userinfo.find(':') {
                    Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                    None => authority.to_owned(),
                }
            }
            None => authority.to_owned(),
        };
        let mut out = format!("{scheme}{authority}{tail}");
        if let Some(q) = out.find('?') {
            let (head, query) = out.split_at(q + 1);
            let query: Vec<String> = query
                .split('&')
                .map(|kv| {
                    if kv.to_ascii_lowercase().starts_with("password=") {
                        "password=***".to_owned()
                    } else {
                        kv.to_owned()
                    }
                })
                .collect();
            out = format!("{head}{}", query.join("&"));
        }
        return out;
    }
    url.split_whitespace()
        .map(|kv| {
            if kv.to_ascii_lowercase().starts_with("password=") {
                "password=***".to_owned()
            } else {
                kv.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// TLS settings (TLS 1.2 and 1.3 only, AEAD cipher suites only). Read
/// through [`TlsFile`], so that client certificates are never asked for
/// without a CA to check them, nor revocation lists given without them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "TlsFile")]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert: PathBuf,
    /// Server private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// Client certificates: `off`, `optional` or `required`. Default `optional`.
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// CA certificates (PEM) that client certificates must chain to; needed unless `client_auth = "off"`.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER files) issued by the client
    /// CA(s). With any listed, a client certificate whose issuer has no CRL
    /// here is refused (its status is unknown). Reloaded on change and on
    /// SIGHUP; a CRL that does not parse, is not signed by a client CA, or is
    /// past its next update is refused and the one in force stays.
    #[serde(default)]
    pub client_crls: Vec<PathBuf>,
    /// A CRL in force that passes its next-update time: `refuse` (the
    /// default: certificates it covers are refused until a fresh CRL is
    /// loaded) or `accept` (keep using it, warn in the log and metrics).
    #[serde(default)]
    pub stale_crl: StaleCrl,
}

/// `[tls]` as written, before its rules across keys are checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    /// Server certificate chain, PEM.
    cert: PathBuf,
    /// Server private key, PEM (PKCS#8, SEC1 or PKCS#1).
    key: PathBuf,
    /// Client certificates: `off`, `optional` or `required`. Default `optional`.
    #[serde(default)]
    client_auth: ClientAuth,
    /// CA certificates (PEM) that client certificates must chain to; needed unless `client_auth = "off"`.
    #[serde(default)]
    client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM or DER files) issued by the client
    /// CA(s). With any listed, a client certificate whose issuer has no CRL
    /// here is refused (its status is unknown). Reloaded on change and on
    /// SIGHUP; a CRL that does not parse, is not signed by a client CA, or is
    /// past its next update is refused and the one in force stays.
    #[serde(default)]
    client_crls: Vec<PathBuf>,
    /// A CRL in force that passes its next-update time: `refuse` (the
    /// default: certificates it covers are refused until a fresh CRL is
    /// loaded) or `accept` (keep using it, warn in the log and metrics).
    #[serde(default)]
    stale_crl: StaleCrl,
}

impl TryFrom<TlsFile> for TlsConfig {
    type Error = Rule;
    fn try_from(t: TlsFile) -> Result<Self, Rule> {
        if t.client_auth != ClientAuth::Off && t.client_ca.is_none() {
            return Err(Rule::ClientCaNeeded);
        }
        if !t.client_crls.is_empty() && t.client_auth == ClientAuth::Off {
            return Err(Rule::CrlsWithoutClientCertificates);
        }
        Ok(Self {
            cert: t.cert,
            key: t.key,
            client_auth: t.client_auth,
            client_ca: t.client_ca,
            client_crls: t.client_crls,
            stale_crl: t.stale_crl,
        })
    }
}

/// What a CRL past its next-update time means for the certificates it covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StaleCrl {
    /// Fail closed: refuse them until a fresh CRL is loaded.
    #[default]
    Refuse,
    /// Keep checking against the stale list; warn.
    Accept,
}

/// Whether callers present a client certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// Not asked for.
    Off,
    /// Asked for, verified if presented; its fingerprint joins the caller's identity.
    #[default]
    Optional,
    /// A verified client certificate is required to connect.
    Required,
}

/// Whom an issuer's tokens name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerKind {
    /// Departments' staff and systems (`dept`, `roles`, `sub`).
    #[default]
    Staff,
    /// Residents, each token carrying the resident's ID number
    /// (`resident_id_claim`): such a token opens only the resident's own
    /// record (`/v1/me/…`) and holds the `resident` role alone.
    Resident,
}

/// A trusted token issuer.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// The `iss` claim its tokens carry.
    pub issuer: String,
    /// `staff` (default: departments' staff and systems) or `resident`
    /// (a resident identity provider, e.g. the province's 一网通办 login).
    #[serde(default)]
    pub kind: IssuerKind,
    /// With `kind = "resident"`: where its tokens carry the resident's
    /// 18-digit ID number (a claim name or dotted path; required).
    #[serde(default)]
    pub resident_id_claim: Option<String>,
    /// The `aud` claim its tokens must carry for this gateway.
    pub audience: String,
    /// Algorithms accepted from this issuer: `ES256`, `RS256`, `EdDSA`, `HS256`.
    pub algorithms: Vec<String>,
    /// Public key (PEM) for the asymmetric algorithms.
    #[serde(default)]
    pub public_key: Option<PathBuf>,
    /// Name of the environment variable holding the HS256 secret (never the secret itself).
    #[serde(default)]
    pub hs256_secret_env: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, in seconds. Default 30.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
    /// The longest a token of this issuer may still be valid when it is
    /// presented (`exp` at most this far ahead), in seconds. Default 86400.
    /// A revoked token is denied until then, so no deny-list entry expires
    /// before a token it names could.
    #[serde(default = "default_max_token_lifetime")]
    pub max_token_lifetime_secs: u64,
    /// The departments its tokens may name (`dept`). Default: every
    /// registered department except the operator's.
    #[serde(default)]
    pub departments: Option<Vec<String>>,
    /// The staff roles its tokens may carry (`privacy_officer`,
    /// `policy_admin`, `data_authority`, `data_steward`, `resident`). Default:
    /// none. Other roles open only what grants give them and are not limited here.
    #[serde(default)]
    pub roles: Vec<String>,
    /// The issuer's JWK Set over HTTPS (verified with `jwks_ca`): keys are
    /// chosen by the token's `kid`, refreshed every `jwks_refresh_secs` and
    /// when a token names a key not in the set. Instead of `public_key`.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// A JWK Set in a file, reloaded when it changes and on SIGHUP.
    /// Instead of `public_key`.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// true: find the JWK Set through OpenID Connect discovery
    /// (`<issuer>/.well-known/openid-configuration`, whose `issuer` must be
    /// this one). The issuer must then be an `https://` URL.
    #[serde(default)]
    pub discovery: bool,
    /// The CA certificate(s) (PEM) the identity provider's HTTPS server is
    /// verified with; required with `jwks_url` and `discovery`.
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// How often the JWK Set is fetched again, in seconds. Default 300.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_secs: NonZeroU64,
    /// The least time between two fetches, in seconds, however many tokens
    /// name unknown keys. Default 30.
    #[serde(default = "default_jwks_min_refetch")]
    pub jwks_min_refetch_secs: u64,
    /// How long the last JWK Set fetched keeps verifying tokens while the
    /// identity provider cannot be reached, in seconds; past it the
    /// issuer's tokens are refused (503 `token-keys-unavailable`). Default 86400.
    #[serde(default = "default_jwks_stale_max")]
    pub jwks_stale_max_secs: u64,
    /// Where in the token its department, roles and subject are (dotted
    /// paths, e.g. Keycloak's `realm_access.roles`).
    #[serde(default)]
    pub claims: ClaimNames,
}

/// Where an issuer's tokens carry the caller's department, roles and
/// subject: claim names, or dotted paths into nested claims.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimNames {
    /// The department id (default `dept`).
    pub department: String,
    /// The roles, an array of strings (default `roles`).
    pub roles: String,
    /// The person or system (default `sub`).
    pub subject: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            department: "dept".into(),
            roles: "roles".into(),
            subject: "sub".into(),
        }
    }
}

fn default_jwks_refresh() -> NonZeroU64 {
    NonZeroU64::new(300).unwrap_or(NonZeroU64::MIN)
}
fn default_jwks_min_refetch() -> u64 {
    30
}
fn default_jwks_stale_max() -> u64 {
    86_400
}

fn default_max_token_lifetime() -> u64 {
    86_400
}

/// Rate limits per consumer department (grant quotas live in the grants).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Default limit for every department. Default `6000/min`.
    #[serde(default = "default_dept_rate")]
    pub per_department: String,
    /// Limits for named departments, overriding the default.
    #[serde(default)]
    pub departments: BTreeMap<String, String>,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            per_department: default_dept_rate(),
            departments: BTreeMap::new(),
        }
    }
}

/// The audit log's durability and batching.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// `fdatasync` (default): each group commit is synced to the device and
    /// survives a power cut. `flush`: written to the OS (survives `kill -9`,
    /// not a power cut), as sled's own flush does.
    #[serde(default)]
    pub durability: Durability,
    /// Most events written in one group commit. Default 512.
    #[serde(default = "default_max_batch")]
    pub max_batch: NonZeroUsize,
    /// The longest (microseconds) a group commit waits for requests still
    /// on their way to it, so that one write and sync serve more of them:
    /// a group closes as soon as none is on its way, or when its oldest
    /// request has waited this long. An idle gateway never waits. Default
    /// 300; 0 writes each group as soon as it is taken.
    #[serde(default = "default_group_wait_us")]
    pub group_wait_us: u64,
    /// Sign a checkpoint at least every this many events. Default 10000.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: NonZeroU64,
    /// And at least this often (seconds) while events arrive. Default 60.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: NonZeroU64,
    /// Days events are kept before `tongban audit prune` may remove them (only
    /// once exported and covered by a signed checkpoint). At least 183
    /// (Cybersecurity Law Art. 21); absent: keep everything (the default).
    #[serde(default)]
    pub retention_days: Option<RetentionDays>,
    /// Free space (MiB) of the data directory's file system below which the
    /// gateway reports itself unready (`/readyz` 503), before a full disk
    /// stops the audit log. Default 512.
    #[serde(default = "default_disk_low_water_mb")]
    pub disk_low_water_mb: u64,
    /// The chain's algorithms: `international` (SHA-256 chain, Ed25519
    /// checkpoints; the default) or `gm` (SM3 chain, SM2 checkpoints).
    /// Changing it on an existing log starts a new epoch; history is kept.
    #[serde(default)]
    pub suite: crate::audit::suite::Suite,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            durability: Durability::default(),
            max_batch: default_max_batch(),
            group_wait_us: default_group_wait_us(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_secs: default_checkpoint_secs(),
            retention_days: None,
            disk_low_water_mb: default_disk_low_water_mb(),
            suite: Default::default(),
        }
    }
}

fn default_disk_low_water_mb() -> u64 {
    512
}

/// The shortest retention the gateway accepts, in days (six months).
pub const MIN_RETENTION_DAYS: u32 = 183;

/// A cluster node's id: 1 to 64 of a-z, 0-9, '.', '_' and '-'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl NodeId {
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for NodeId {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for NodeId {
    type Error = Rule;
    fn try_from(id: String) -> Result<Self, Rule> {
        let ok = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
        if ok {
            Ok(Self(id))
        } else {
            Err(Rule::NodeId(id))
        }
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

/// A retention period in days, at least [`MIN_RETENTION_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct RetentionDays(u32);

impl RetentionDays {
    /// The days.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for RetentionDays {
    type Error = Rule;
    fn try_from(days: u32) -> Result<Self, Rule> {
        if days < MIN_RETENTION_DAYS {
            return Err(Rule::RetentionTooShort(days));
        }
        Ok(Self(days))
    }
}

impl From<RetentionDays> for u32 {
    fn from(days: RetentionDays) -> u32 {
        days.0
    }
}

/// How far an acknowledged audit event has been pushed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// fdatasync of the write-ahead file per group (and of sled's file when it is flushed).
    #[default]
    Fdatasync,
    /// Written to the write-ahead file, not synced.
    Flush,
}

/// Backups taken through the API (`GET /v1/admin/backup`, `tongban backup`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Whether such a backup may hold the keys of the data directory (the
    /// resident pseudonym key, the checkpoint keys, the answer-signing
    /// keys) when asked (`--keys`). Default false: whoever holds the
    /// checkpoint key can sign a checkpoint over an altered log, so by
    /// default the keys leave the machine only with the machine's own
    /// access (copied from the data directory), never through the API.
    #[serde(default)]
    pub allow_keys: bool,
}

/// The sharing workflow's deadlines, in working days on the calendar.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SharingConfig {
    /// The data authority's review of a request. Default 2.
    #[serde(default = "default_review_days")]
    pub review_days: u32,
    /// The owner's answer, from the review. Default 5.
    #[serde(default = "default_answer_days")]
    pub answer_days: u32,
    /// The owner's answer to a data objection. Default 5.
    #[serde(default = "default_answer_days")]
    pub objection_days: u32,
}

impl Default for SharingConfig {
    fn default() -> Self {
        Self {
            review_days: default_review_days(),
            answer_days: default_answer_days(),
            objection_days: default_answer_days(),
        }
    }
}

fn default_review_days() -> u32 {
    2
}
fn default_answer_days() -> u32 {
    5
}

/// Residents' own record (`/v1/me/…`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResidentsConfig {
    /// How often one resident may call `/v1/me/…`. Default `30/min`.
    #[serde(default = "default_resident_rate")]
    pub rate: crate::pipeline::rate_limit::RateSpec,
    /// Whether a resident's record names the person (`sub`) in the
    /// department who asked. Default false: the department, purpose and
    /// case are named, the clerk is not.
    #[serde(default)]
    pub show_clerk: bool,
    /// Working days (on the working-day calendar) within which an
    /// objection must be answered. Default 15.
    #[serde(default = "default_objection_days")]
    pub objection_answer_days: u32,
    /// The body named at the head of a disclosure report handed to a
    /// resident (出具单位). Default: the operator department's name.
    #[serde(default)]
    pub report_issuer: Option<String>,
}

impl Default for ResidentsConfig {
    fn default() -> Self {
        Self {
            rate: default_resident_rate(),
            show_clerk: false,
            objection_answer_days: default_objection_days(),
            report_issuer: None,
        }
    }
}

fn default_resident_rate() -> crate::pipeline::rate_limit::RateSpec {
    crate::pipeline::rate_limit::RateSpec {
        count: std::num::NonZeroU32::new(30).unwrap_or(std::num::NonZeroU32::MIN),
        per: std::time::Duration::from_secs(60),
    }
}
fn default_objection_days() -> u32 {
    15
}

/// The working-day calendar.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The calendar file: each year's statutory holidays and make-up
    /// working days (`deploy/calendar.toml` holds 2026's). Default: none,
    /// Monday to Friday are the working days.
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// Anomaly flags: thresholds, the check that raises them while serving,
/// and the webhook new ones are posted to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// The thresholds file (`deploy/anomaly.toml`). Default: none, the
    /// built-in thresholds (those the example file spells out).
    #[serde(default)]
    pub rules: Option<PathBuf>,
    /// How often today's flags are computed for the metrics and the
    /// webhook, in seconds; 0 turns the check off. Default 300.
    #[serde(default = "default_alert_interval")]
    pub interval_secs: u64,
    /// Where each new flag is posted (JSON, HTTPS only). Default: none.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The CA certificate(s) (PEM) the webhook's server is verified with;
    /// required with `webhook_url`.
    #[serde(default)]
    pub webhook_ca: Option<PathBuf>,
    /// Flags waiting to be posted; past it the newest are dropped and
    /// counted (`tongban_alert_webhook_dropped_total`). Default 256.
    #[serde(default = "default_alert_queue")]
    pub webhook_queue: NonZeroUsize,
    /// Attempts after the first, with doubling backoff from one second.
    /// Default 5.
    #[serde(default = "default_alert_retries")]
    pub webhook_retries: u32,
    /// The longest one post may take, in seconds. Default 10.
    #[serde(default = "default_alert_timeout")]
    pub webhook_timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            rules: None,
            interval_secs: default_alert_interval(),
            webhook_url: None,
            webhook_ca: None,
            webhook_queue: default_alert_queue(),
            webhook_retries: default_alert_retries(),
            webhook_timeout_secs: default_alert_timeout(),
        }
    }
}

fn default_alert_interval() -> u64 {
    300
}
fn default_alert_queue() -> NonZeroUsize {
    NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN)
}
fn default_alert_retries() -> u32 {
    5
}
fn default_alert_timeout() -> u64 {
    10
}

/// Limits on what a request may carry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body, in bytes. Default 65536.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Longest bearer token, in bytes. Default 8192.
    #[serde(default = "default_max_token")]
    pub max_token_bytes: usize,
    /// Most open client connections; more are closed at once. Default 4096.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Most resident IDs in one batch request, whatever a grant allows. Default 1000.
    #[serde(default = "default_max_batch_ids")]
    pub max_batch_ids: usize,
    /// Longest a client may take to send its request headers, in seconds. Default 10.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Longest a client may take to send its request body once its headers
    /// are in, in seconds (408 after). Default 30.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Largest body of an online import of records
    /// (`/v1/admin/datasets/{id}/records`), in bytes: it is written to the
    /// data directory as it arrives, never held in memory. Default
    /// 4294967296 (4 GiB).
    #[serde(default = "default_max_import_bytes")]
    pub max_import_bytes: u64,
    /// Longest an online import's body may take to arrive, in seconds.
    /// Default 3600.
    #[serde(default = "default_import_timeout")]
    pub import_timeout_secs: u64,
    /// Most bytes of request headers (names and values), HTTP/1.1 and
    /// HTTP/2 alike: more get 431 `headers-too-large`. Default 32768
    /// (the connection's own buffer ends at 64 KiB).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Refusals before authentication (no token, a bad one, unknown routes)
    /// per source address, each audited; past it they are counted into one
    /// `unauthenticated.summary` event per source and minute and answered
    /// 429. Default `100/10s`.
    #[serde(default = "default_unauthenticated_per_source")]
    pub unauthenticated_per_source: RateSpec,
    /// After the TLS handshake, the longest a connection may wait before its
    /// first request, seconds. Default 10.
    #[serde(default = "default_first_request_timeout")]
    pub first_request_timeout_secs: u64,
    /// The longest an HTTP/1.1 connection may stay open with no request in
    /// flight, seconds. Default 60.
    #[serde(default = "default_idle_secs")]
    pub keepalive_idle_secs: u64,
    /// The longest an HTTP/2 connection may stay open with no stream in
    /// flight, seconds (keep-alive pings find dead peers sooner). Default 60.
    #[serde(default = "default_idle_secs")]
    pub http2_idle_timeout_secs: u64,
    /// Most open connections from one source address (an IPv6 /64). Default 256.
    #[serde(default = "default_max_connections_per_source")]
    pub max_connections_per_source: usize,
    /// Load balancers (addresses or ranges, `"10.0.0.5/32"`) that send the
    /// PROXY protocol v2 header before TLS; their connections must, and the
    /// client address in it is used for every per-source rule and the audit
    /// `source`. Default: none.
    #[serde(default)]
    pub trusted_proxies: Vec<Cidr>,
}

fn default_first_request_timeout() -> u64 {
    10
}

fn default_idle_secs() -> u64 {
    60
}

fn default_max_connections_per_source() -> usize {
    256
}

fn default_unauthenticated_per_source() -> RateSpec {
    RateSpec {
        count: std::num::NonZeroU32::MIN.saturating_add(99),
        per: std::time::Duration::from_secs(10),
    }
}

fn default_max_header_bytes() -> usize {
    32 * 1024
}

fn default_max_import_bytes() -> u64 {
    4 << 30
}

fn default_import_timeout() -> u64 {
    3600
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: default_max_body(),
            max_token_bytes: default_max_token(),
            header_timeout_secs: default_header_timeout(),
            body_timeout_secs: default_body_timeout(),
            max_import_bytes: default_max_import_bytes(),
            import_timeout_secs: default_import_timeout(),
            max_connections: default_max_connections(),
            max_batch_ids: default_max_batch_ids(),
            max_header_bytes: default_max_header_bytes(),
            unauthenticated_per_source: default_unauthenticated_per_source(),
            first_request_timeout_secs: default_first_request_timeout(),
            keepalive_idle_secs: default_idle_secs(),
            http2_idle_timeout_secs: default_idle_secs(),
            max_connections_per_source: default_max_connections_per_source(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// How the gateway calls upstream providers (the owners' own APIs).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// CA certificates that sign the upstreams' server certificates (PEM).
    pub ca: PathBuf,
    /// The gateway's client certificate chain, presented to every upstream (PEM).
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// Longest wait for a TCP connection, in milliseconds. Default 1000.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Idle connections kept per upstream host. Default 16.
    #[serde(default = "default_max_idle")]
    pub max_idle_per_host: usize,
    /// Most requests in flight to one upstream; more wait their turn. Default 64.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: NonZeroUsize,
    /// Retries of a read after a connection failure (never after the request
    /// was sent). Default 1.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Consecutive failures (connection, timeout, 5xx) that open an
    /// upstream's circuit. Default 5.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: NonZeroU32,
    /// How long an open circuit refuses at once before one trial call, in seconds. Default 10.
    #[serde(default = "default_breaker_open_secs")]
    pub breaker_open_secs: u64,
    /// Single lookups in flight for one batch to an upstream without a batch route. Default 8.
    #[serde(default = "default_batch_concurrency")]
    pub batch_concurrency: NonZeroUsize,
}

fn default_connect_timeout_ms() -> u64 {
    1000
}
fn default_max_idle() -> usize {
    16
}
fn default_max_in_flight() -> NonZeroUsize {
    NonZeroUsize::new(64).unwrap_or(NonZeroUsize::MIN)
}
fn default_retries() -> u32 {
    1
}
fn default_breaker_failures() -> NonZeroU32 {
    NonZeroU32::new(5).unwrap_or(NonZeroU32::MIN)
}
fn default_breaker_open_secs() -> u64 {
    10
}
fn default_batch_concurrency() -> NonZeroUsize {
    NonZeroUsize::new(8).unwrap_or(NonZeroUsize::MIN)
}

/// Logging.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

fn default_pool_size() -> NonZeroUsize {
    NonZeroUsize::new(4).unwrap_or(NonZeroUsize::MIN)
}
fn default_pg_connect_timeout_ms() -> NonZeroU64 {
    NonZeroU64::new(3000).unwrap_or(NonZeroU64::MIN)
}
fn default_statement_timeout_ms() -> u64 {
    5000
}
fn default_policy_check_secs() -> NonZeroU64 {
    NonZeroU64::new(5).unwrap_or(NonZeroU64::MIN)
}
fn default_heartbeat_secs() -> NonZeroU64 {
    NonZeroU64::new(2).unwrap_or(NonZeroU64::MIN)
}
fn default_redis_timeout_ms() -> u64 {
    100
}
fn default_node_id() -> String {
    "node-1".to_owned()
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_policies_dir() -> PathBuf {
    PathBuf::from("policies")
}
fn default_cache_mb() -> u64 {
    256
}
fn default_utc_offset() -> CalendarOffset {
    CalendarOffset(time::macros::offset!(+8))
}

/// The UTC offset of the gateway's calendar (`+08:00`), checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct CalendarOffset(pub time::UtcOffset);

/// A `utc_offset` not of the form `+08:00`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("utc_offset \"{0}\" is not of the form +08:00")]
pub struct OffsetError(String);

impl TryFrom<String> for CalendarOffset {
    type Error = OffsetError;

    fn try_from(s: String) -> Result<Self, OffsetError> {
        time::UtcOffset::parse(
            &s,
            time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
        )
        .map(Self)
        .map_err(|_| OffsetError(s))
    }
}

impl From<CalendarOffset> for String {
    fn from(o: CalendarOffset) -> Self {
        let (h, m, _) = o.0.as_hms();
        let sign = if o.0.is_negative() { '-' } else { '+' };
        format!("{sign}{:02}:{:02}", h.unsigned_abs(), m.unsigned_abs())
    }
}
fn default_leeway() -> u64 {
    30
}
fn default_dept_rate() -> String {
    "6000/min".to_owned()
}
fn default_max_batch() -> NonZeroUsize {
    NonZeroUsize::new(512).unwrap_or(NonZeroUsize::MIN)
}

fn default_group_wait_us() -> u64 {
    300
}
fn default_checkpoint_every() -> NonZeroU64 {
    NonZeroU64::new(10_000).unwrap_or(NonZeroU64::MIN)
}
fn default_checkpoint_secs() -> NonZeroU64 {
    NonZeroU64::new(60).unwrap_or(NonZeroU64::MIN)
}
fn default_operator() -> String {
    "shujuju".to_owned()
}
fn default_max_body() -> usize {
    64 * 1024
}
fn default_max_token() -> usize {
    8192
}
fn default_max_batch_ids() -> usize {
    1000
}
fn default_max_connections() -> usize {
    4096
}
fn default_header_timeout() -> u64 {
    10
}
fn default_body_timeout() -> u64 {
    30
}

/// A configuration that cannot be used, with the reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot be read: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// A rule across settings that a configuration breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rule {
    /// No issuer: no token could be accepted.
    #[error("no [[issuer]] is configured: no token could be accepted")]
    NoIssuer,
    /// Client certificates asked for without a CA to check them.
    #[error("tls.client_ca is needed unless tls.client_auth = \"off\"")]
    ClientCaNeeded,
    /// Revocation lists without client certificates.
    #[error("tls.client_crls needs client certificates (tls.client_auth is \"off\")")]
    CrlsWithoutClientCertificates,
    /// A cluster node id of the wrong form.
    #[error("cluster.node_id \"{0}\": 1 to 64 of a-z, 0-9, '.', '_' and '-'")]
    NodeId(String),
    /// Two node ids.
    #[error(
        "node_id = \"{top}\" and cluster.node_id = \"{cluster}\" differ; in cluster mode set cluster.node_id only"
    )]
    NodeIdsDiffer {
        /// The top-level one.
        top: String,
        /// The cluster's.
        cluster: String,
    },
    /// A retention shorter than the law allows.
    #[error(
        "audit.retention_days = {0} is shorter than the legal minimum of {MIN_RETENTION_DAYS} days (six months, Cybersecurity Law Art. 21)"
    )]
    RetentionTooShort(u32),
    /// A resident issuer without its ID claim, or with staff settings.
    #[error(
        "[[issuer]] {0}: kind = \"resident\" needs resident_id_claim, and takes neither departments nor roles (its tokens hold the resident role alone); resident_id_claim is for resident issuers only"
    )]
    ResidentIssuer(String),
    /// Two issuers with the same `issuer`.
    #[error(
        "[[issuer]] {0} appears twice: each issuer once (a staff and a resident issuer need different iss values)"
    )]
    DuplicateIssuer(String),
    /// An objection deadline out of range.
    #[error("residents.objection_answer_days = {0}: from 1 to 60 working days")]
    ObjectionDays(u32),
    /// A sharing deadline out of range.
    #[error("sharing.{0} = {1}: from 1 to 60 working days")]
    SharingDays(&'static str, u32),
    /// A webhook that is not HTTPS, or without the CA to verify it.
    #[error(
        "alerts.webhook_url must be an https:// URL and alerts.webhook_ca name the CA that verifies its server"
    )]
    WebhookNeedsHttpsAndCa,
}

impl Config {
    /// Reads a configuration file and resolves its relative paths against the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|reason| ConfigError::Read {
            path: path.to_owned(),
            reason,
        })?;
        let mut config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        config.resolve_paths(base);
        config.source = Some(path.to_owned());
        config.check().map_err(|rule| ConfigError::Invalid {
            path: path.to_owned(),
            message: rule.to_string(),
        })?;
        if let Some(c) = &config.cluster {
            config.node_id = c.node_id.to_string();
        }
        Ok(config)
    }

    /// Makes every relative path absolute against `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.data_dir);
        fix(&mut self.policies_dir);
        for p in self.files_mut() {
            fix(p);
        }
    }

    /// Every file the configuration names: TLS, issuer keys, upstream
    /// certificates, the cluster's CA.
    pub fn files_named(&self) -> Vec<PathBuf> {
        let mut copy = self.clone();
        copy.files_mut().into_iter().map(|p| p.clone()).collect()
    }

    fn files_mut(&mut self) -> Vec<&mut PathBuf> {
        let mut out = vec![&mut self.tls.cert, &mut self.tls.key];
        out.extend(self.tls.client_ca.as_mut());
        out.extend(self.tls.client_crls.iter_mut());
        for issuer in &mut self.issuers {
            out.extend(
                [
                    &mut issuer.public_key,
                    &mut issuer.jwks_file,
                    &mut issuer.jwks_ca,
                ]
                .into_iter()
                .flatten(),
            );
        }
        if let Some(up) = &mut self.upstream {
            out.extend([&mut up.ca, &mut up.client_cert, &mut up.client_key]);
        }
        out.extend(self.cluster.as_mut().and_then(|c| c.postgres_ca.as_mut()));
        out.extend(self.calendar.file.as_mut());
        out.extend(self.alerts.rules.as_mut());
        out.extend(self.alerts.webhook_ca.as_mut());
        out
    }

    /// Checks the rules across sections that reading cannot: an issuer to
    /// accept tokens from, and one node id in cluster mode. (Every rule
    /// within a section is checked as it is read.)
    pub fn check(&self) -> Result<(), Rule> {
        if self.issuers.is_empty() {
            return Err(Rule::NoIssuer);
        }
        let mut seen = std::collections::BTreeSet::new();
        for i in &self.issuers {
            if !seen.insert(i.issuer.as_str()) {
                return Err(Rule::DuplicateIssuer(i.issuer.clone()));
            }
            let resident = i.kind == IssuerKind::Resident;
            let staff_settings = i.departments.is_some() || !i.roles.is_empty();
            if resident == i.resident_id_claim.is_none() || (resident && staff_settings) {
                return Err(Rule::ResidentIssuer(i.issuer.clone()));
            }
        }
        if !(1..=60).contains(&self.residents.objection_answer_days) {
            return Err(Rule::ObjectionDays(self.residents.objection_answer_days));
        }
        for (key, days) in [
            ("review_days", self.sharing.review_days),
            ("answer_days", self.sharing.answer_days),
            ("objection_days", self.sharing.objection_days),
        ] {
            if !(1..=60).contains(&days) {
                return Err(Rule::SharingDays(key, days));
            }
        }
        if let Some(url) = &self.alerts.webhook_url {
            let https = url
                .parse::<hyper::Uri>()
                .is_ok_and(|u| u.scheme_str() == Some("https") && u.host().is_some());
            if !https || self.alerts.webhook_ca.is_none() {
                return Err(Rule::WebhookNeedsHttpsAndCa);
            }
        }
        if let Some(c) = &self.cluster {
            if self.node_id != default_node_id() && self.node_id != c.node_id.as_str() {
                return Err(Rule::NodeIdsDiffer {
                    top: self.node_id.clone(),
                    cluster: c.node_id.to_string(),
                });
            }
        }
        Ok(())
    }

    /// The configured calendar offset.
    pub fn utc_offset(&self) -> time::UtcOffset {
        self.utc_offset.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_passwords_are_redacted_in_every_form() {
        for (url, want) in [
            (
                "postgres://tongban:s3cret@db.example:5432/tongban?sslmode=require",
                "postgres://tongban:***@db.example:5432/tongban?sslmode=require",
            ),
            (
                "postgresql://u:p%40ss@h/db?password=other&application_name=x",
                "postgresql://u:***@h/db?password=***&application_name=x",
            ),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "host=db user=tongban password=s3cret dbname=t",
                "host=db user=tongban password=*** dbname=t",
            ),
        ] {
            assert_eq!(redact_url(url), want);
        }
        let c = ClusterConfig {
            node_id: NodeId::try_from("node-a".to_owned()).unwrap(),
            postgres_url: "postgres://tongban:s3cret@db/t".into(),
            postgres_password_env: None,
            postgres_ca: None,
            pool_size: NonZeroUsize::new(4).unwrap(),
            connect_timeout_ms: NonZeroU64::new(1000).unwrap(),
            statement_timeout_ms: 1000,
            policy_check_secs: NonZeroU64::new(5).unwrap(),
            heartbeat_secs: NonZeroU64::new(2).unwrap(),
            redis_url: Some("redis://:r3dis@cache:6379/0".into()),
            redis_password_env: None,
            redis_timeout_ms: 100,
            stop_clock_skew_secs: 5,
            shutdown_ship_secs: 10,
        };
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("s3cret") && debug.contains("***"),
            "{debug}"
        );
    }

    #[test]
    fn a_resident_issuer_names_its_id_claim_and_nothing_of_staff() {
        let base = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"off\"\n[[issuer]]\nissuer = \"r\"\naudience = \"a\"\nalgorithms = [\"ES256\"]\n";
        let check = |extra: &str| {
            toml::from_str::<Config>(&format!("{base}{extra}"))
                .unwrap()
                .check()
        };
        assert!(check("kind = \"resident\"\nresident_id_claim = \"id_number\"\n").is_ok());
        assert!(check("").is_ok());
        for bad in [
            "kind = \"resident\"\n",
            "kind = \"resident\"\nresident_id_claim = \"id\"\nroles = [\"privacy_officer\"]\n",
            "kind = \"resident\"\nresident_id_claim = \"id\"\ndepartments = [\"minzheng\"]\n",
            "resident_id_claim = \"id\"\n",
        ] {
            assert!(matches!(check(bad), Err(Rule::ResidentIssuer(_))), "{bad}");
        }
    }

    /// Values read as text are checked as they are read, with the line and
    /// the reason, and written back as they were given.
    #[test]
    fn ranges_rates_and_offsets_are_checked_as_they_are_read() {
        let base = "issuer = []\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"off\"\n";
        for (bad, says) in [
            ("utc_offset = \"8\"\n", "+08:00"),
            ("[limits]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "prefix"),
            (
                "[limits]\ntrusted_proxies = [\"nonsense\"]\n",
                "not an address",
            ),
            (
                "[limits]\nunauthenticated_per_source = \"lots\"\n",
                "120/min",
            ),
        ] {
            let text = if bad.starts_with('[') {
                format!("{base}{bad}")
            } else {
                format!("{bad}{base}")
            };
            let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let text = format!(
            "utc_offset = \"-03:30\"\n{base}[limits]\ntrusted_proxies = [\"10.1.0.0/16\", \"::1\"]\nunauthenticated_per_source = \"100/10s\"\n"
        );
        let config: Config = toml::from_str(&text).unwrap();
        assert_eq!(config.utc_offset(), time::macros::offset!(-3:30));
        assert!(config.limits.trusted_proxies[1].contains("::1".parse().unwrap()));
        let again: Config = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again.utc_offset, config.utc_offset);
        assert_eq!(again.limits.trusted_proxies, config.limits.trusted_proxies);
        assert_eq!(
            again.limits.unauthenticated_per_source,
            config.limits.unauthenticated_per_source
        );
        let defaults: Config = toml::from_str(base).unwrap();
        assert_eq!(
            defaults.limits.unauthenticated_per_source,
            "100/10s".parse().unwrap()
        );
        assert_eq!(defaults.utc_offset(), time::macros::offset!(+8));
    }

    /// Settings that must be at least 1, a retention under the legal
    /// minimum, a malformed node id and contradictory TLS settings cannot be
    /// read: the error names the key and the rule.
    #[test]
    fn deadlines_out_of_range_are_refused_naming_the_key() {
        let base = "[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"off\"\n[[issuer]]\nissuer = \"r\"\naudience = \"a\"\nalgorithms = [\"ES256\"]\n";
        for (bad, says) in [
            ("[sharing]\nreview_days = 0\n", "sharing.review_days = 0"),
            ("[sharing]\nanswer_days = 61\n", "sharing.answer_days = 61"),
            (
                "[sharing]\nobjection_days = 0\n",
                "sharing.objection_days = 0",
            ),
            (
                "[residents]\nobjection_answer_days = 0\n",
                "residents.objection_answer_days = 0",
            ),
        ] {
            let config: Config = toml::from_str(&format!("{base}{bad}")).unwrap();
            let err = config.check().unwrap_err().to_string();
            assert!(err.contains(says), "{bad}: {err}");
        }
        let config: Config =
            toml::from_str(&format!("{base}[sharing]\nreview_days = 60\n")).unwrap();
        assert!(config.check().is_ok());
    }

    #[test]
    fn zeros_and_a_short_retention_are_refused_as_they_are_read() {
        let base = "issuer = []\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\nclient_auth = \"off\"\n";
        for (bad, key, says) in [
            ("[audit]\nmax_batch = 0\n", "max_batch", "nonzero"),
            (
                "[audit]\ncheckpoint_every = 0\n",
                "checkpoint_every",
                "nonzero",
            ),
            (
                "[audit]\ncheckpoint_secs = 0\n",
                "checkpoint_secs",
                "nonzero",
            ),
            ("[audit]\nretention_days = 90\n", "retention_days", "183"),
            (
                "[cluster]\nnode_id = \"a\"\npostgres_url = \"postgres://h/d\"\npool_size = 0\n",
                "pool_size",
                "nonzero",
            ),
            (
                "[cluster]\nnode_id = \"a\"\npostgres_url = \"postgres://h/d\"\nheartbeat_secs = 0\n",
                "heartbeat_secs",
                "nonzero",
            ),
            (
                "[cluster]\nnode_id = \"Node A\"\npostgres_url = \"postgres://h/d\"\n",
                "node_id",
                "1 to 64 of a-z",
            ),
        ] {
            let err = toml::from_str::<Config>(&format!("{base}{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key) && err.contains(says), "{bad}: {err}");
        }
        // Across the keys of [tls].
        for (tls, says) in [
            ("client_auth = \"required\"\n", "tls.client_ca is needed"),
            (
                "client_auth = \"off\"\nclient_crls = [\"c.crl\"]\n",
                "tls.client_crls needs client certificates",
            ),
        ] {
            let text = format!("issuer = []\n[tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n{tls}");
            let err = toml::from_str::<Config>(&text).unwrap_err().to_string();
            assert!(err.contains(says), "{tls}: {err}");
        }
        let ok: Config = toml::from_str(&format!("{base}[audit]\nretention_days = 183\n")).unwrap();
        assert_eq!(ok.audit.retention_days.map(RetentionDays::get), Some(183));
    }
}
