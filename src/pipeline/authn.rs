//! Authentication: `Authorization: Bearer <JWT>` → [`Principal`].
//!
//! The token's issuer selects the key; the algorithm must be one configured
//! for that issuer (so `alg: none` and HS256-signed-with-the-public-key both
//! fail); `iss`, `aud`, `sub`, `exp`, `dept` and `roles` are required. Expiry
//! is checked against the gateway's clock on every use, including for tokens
//! served from the verified-token cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::jwks::{JwksSource, JwksStatus};

use crate::clock::Clock;
use crate::config::IssuerConfig;
use crate::domain::{DeptId, Role};

/// Who is calling: established from a verified token and the TLS connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The caller's department (`dept` claim).
    pub dept: DeptId,
    /// The person or system (`sub` claim).
    pub subject: crate::audit::event::Text,
    /// The caller's roles (`roles` claim).
    pub roles: Vec<Role>,
    /// The issuer that vouched for it.
    pub issuer: String,
    /// Token expiry, seconds since the epoch.
    pub expires: i64,
    /// Token id, if the issuer sets one.
    pub token_id: Option<String>,
    /// When the token was issued (`iat`), seconds since the epoch, if set.
    pub issued_at: Option<i64>,
    /// The client certificate the token is bound to (`cnf.x5t#S256`,
    /// RFC 8705): its SHA-256 thumbprint.
    pub bound_certificate: Option<[u8; 32]>,
    /// A resident's token (`kind = "resident"` issuer): the resident's ID
    /// number. Such a principal's department is [`RESIDENTS`], its subject
    /// is [`RESIDENTS`] too (never the token's `sub`, which may be the ID),
    /// its one role `resident`; it opens only `/v1/me/…`.
    pub resident: Option<crate::domain::ResidentId>,
}

/// The department and subject of every resident principal: not a
/// department (policy validation refuses a department of this id), and the
/// same for every resident, so that nothing about the resident is in them.
pub const RESIDENTS: &str = "resident";

/// Roles that open the gateway's own surfaces (the log, the policy, the
/// sharing workflow, a resident's own record) rather than data through
/// grants: an issuer asserts them only where its `roles` names them, and no
/// grant may name them.
pub const STAFF_ROLES: &[&str] = &[
    "privacy_officer",
    "policy_admin",
    "data_authority",
    "data_steward",
    "resident",
];

impl Principal {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r.as_str() == role)
    }
}

/// Why a token was refused. Each maps to `401` with `WWW-Authenticate: Bearer`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no bearer token: send Authorization: Bearer <JWT>")]
    Missing,
    /// The header is not a bearer token, or appears twice.
    #[error("the Authorization header must be a single 'Bearer <JWT>'")]
    NotBearer,
    /// The token is longer than the configured limit.
    #[error("the token is longer than {0} bytes")]
    TooLarge(usize),
    /// Not a well-formed JWT.
    #[error("the token is not a well-formed JWT")]
    Malformed,
    /// The `iss` claim names no configured issuer.
    #[error("the token's issuer is not trusted")]
    UnknownIssuer,
    /// The algorithm is not configured for the issuer.
    #[error("algorithm {0} is not accepted from this issuer")]
    AlgorithmNotAllowed(String),
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `aud` does not name this gateway.
    #[error("the token's audience is not this gateway")]
    WrongAudience,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A required claim is missing or of the wrong type.
    #[error("claim {0}")]
    BadClaim(String),
    /// `dept` names no registered department.
    #[error("the token's department is not registered")]
    UnknownDepartment,
    /// The token is on the deny-list (revoked by an administrator).
    #[error("the token has been revoked")]
    Revoked,
    /// The issuer may not vouch for this department or role.
    #[error("{0}")]
    OutOfScope(String),
    /// The token names a key (`kid`) its issuer's published set lacks.
    #[error("the token's key id is not among its issuer's published keys")]
    UnknownKey,
    /// The issuer's published keys could not be fetched for longer than
    /// `jwks_stale_max_secs`: its tokens cannot be verified now.
    #[error("the token issuer's published keys cannot be fetched now")]
    KeysUnavailable,
}

impl AuthError {
    /// The RFC 6750 error code for `WWW-Authenticate`; none when no token was sent.
    pub fn bearer_error(&self) -> Option<&'static str> {
        match self {
            Self::Missing => None,
            Self::NotBearer => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Where an issuer's tokens carry the department, roles and subject:
/// each a path of claim names (`realm_access.roles` is `["realm_access", "roles"]`).
struct ClaimPaths {
    department: Vec<String>,
    roles: Vec<String>,
    subject: Vec<String>,
    /// Whether these are the gateway's own names (`dept`, `roles`, `sub`):
    /// then a value in `roles` that is not a role code refuses the token;
    /// under an identity provider's own path such values (its built-in
    /// roles) are left out.
    own_names: bool,
}

impl ClaimPaths {
    fn new(c: &crate::config::ClaimNames) -> Result<Self, String> {
        let path = |what: &str, p: &str| {
            let parts: Vec<String> = p.split('.').map(str::to_owned).collect();
            if parts.iter().any(String::is_empty) {
                Err(format!(
                    "claims.{what} \"{p}\" is not a dotted path of claim names"
                ))
            } else {
                Ok(parts)
            }
        };
        Ok(Self {
            department: path("department", &c.department)?,
            roles: path("roles", &c.roles)?,
            subject: path("subject", &c.subject)?,
            own_names: *c == crate::config::ClaimNames::default(),
        })
    }
}

/// The claim at `path` in `claims`.
fn claim_at<'a>(
    claims: &'a serde_json::Map<String, serde_json::Value>,
    path: &[String],
) -> Option<&'a serde_json::Value> {
    let (first, rest) = path.split_first()?;
    rest.iter()
        .try_fold(claims.get(first)?, |v, name| v.get(name))
}

#[derive(Deserialize)]
struct IssuerOnly {
    #[serde(default)]
    iss: Option<String>,
}

struct TrustedIssuer {
    validation: Validation,
    /// Keys configured by file or secret (none when the issuer publishes a set).
    keys: Vec<(Algorithm, DecodingKey)>,
    /// The issuer's published keys, when it publishes them.
    jwks: Option<Arc<JwksSource>>,
    claims: ClaimPaths,
    leeway: i64,
    max_lifetime: i64,
    /// The departments it may name; `None`: every registered one but the operator's.
    departments: Option<std::collections::HashSet<String>>,
    /// The staff roles it may assert.
    staff_roles: Vec<String>,
    /// A resident issuer: where its tokens carry the resident's ID number.
    resident_id: Option<Vec<String>>,
}

/// The last token verified on one connection and who it names: the next
/// request on the connection that presents the same bytes (compared in
/// full, in constant time) skips hashing the token for the cache. Expiry,
/// the department, the issuer's scope, revocation and the certificate
/// binding are still checked on every request; a memo is only used by the
/// authenticator that filled it.
#[derive(Default)]
pub struct TokenMemo(Mutex<Option<Memo>>);

struct Memo {
    authenticator: u64,
    /// The key epoch the token was verified in.
    epoch: u64,
    token: Box<[u8]>,
    principal: Arc<Principal>,
}

impl std::fmt::Debug for TokenMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenMemo { .. }")
    }
}

impl TokenMemo {
    fn get(&self, authenticator: u64, epoch: u64, token: &[u8]) -> Option<Arc<Principal>> {
        let memo = self.0.lock().ok()?;
        let m = memo.as_ref()?;
        (m.authenticator == authenticator
            && m.epoch == epoch
            && m.token.len() == token.len()
            && aws_lc_rs::constant_time::verify_slices_are_equal(&m.token, token).is_ok())
        .then(|| m.principal.clone())
    }

    fn put(&self, authenticator: u64, epoch: u64, token: &[u8], principal: Arc<Principal>) {
        if let Ok(mut memo) = self.0.lock() {
            *memo = Some(Memo {
                authenticator,
                epoch,
                token: token.into(),
                principal,
            });
        }
    }
}

/// One shard of the verified-token cache: token hash → (key epoch, principal).
type CacheShard = Mutex<HashMap<[u8; 32], (u64, Arc<Principal>)>>;

/// Tells authenticators apart (a memo is only trusted by its own).
static AUTHENTICATORS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Verifies bearer tokens against the configured issuers, with a cache of
/// verified tokens (an ES256 verification costs ~35 µs; a cache hit, well under 1).
pub struct Authenticator {
    /// This authenticator's number, for [`TokenMemo`].
    id: u64,
    issuers: HashMap<String, TrustedIssuer>,
    operator: String,
    /// Verified tokens, with the key epoch they were verified in.
    cache: Vec<CacheShard>,
    /// Moves on whenever a published key set changes: a token verified in
    /// an earlier epoch is verified again (its key may be withdrawn).
    epoch: Arc<std::sync::atomic::AtomicU64>,
    /// The issuers that publish their keys.
    sources: Vec<Arc<JwksSource>>,
    max_token_bytes: usize,
    /// Verified tokens kept per shard (`CACHE_PER_SHARD`; smaller in tests).
    cache_per_shard: usize,
    clock: Clock,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuers", &self.issuers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

const CACHE_SHARDS: usize = 16;
const CACHE_PER_SHARD: usize = 4096;

/// An issuer configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("issuer {issuer}: {message}")]
pub struct IssuerError {
    issuer: String,
    message: String,
}

impl Authenticator {
    /// Builds the verifier from the configured issuers, reading their keys.
    pub fn new(
        configs: &[IssuerConfig],
        operator_department: &str,
        max_token_bytes: usize,
        clock: Clock,
    ) -> Result<Self, IssuerError> {
        let mut issuers = HashMap::new();
        let epoch = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut sources = Vec::new();
        for c in configs {
            let fail = |message: String| IssuerError {
                issuer: c.issuer.clone(),
                message,
            };
            let algorithms = c
                .algorithms
                .iter()
                .map(|name| {
                    name.parse::<Algorithm>()
                        .map_err(|_| fail(format!("unknown algorithm {name}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            // A published set, or the PEM file: both read again while serving.
            let jwks = match JwksSource::from_config(c, &algorithms, epoch.clone(), clock.clone())
                .map_err(fail)?
            {
                Some(set) => Some(set),
                None => JwksSource::from_pem(c, &algorithms, epoch.clone(), clock.clone())
                    .map_err(fail)?,
            }
            .map(Arc::new);
            let claims = ClaimPaths::new(&c.claims).map_err(fail)?;
            let keys = configured_keys(c, &algorithms, jwks.is_some()).map_err(fail)?;
            let Some(&first) = algorithms.first() else {
                return Err(fail("algorithms is empty".into()));
            };
            let mut validation = Validation::new(first);
            validation.algorithms.clone_from(&algorithms);
            validation.set_issuer(&[&c.issuer]);
            validation.set_audience(&[&c.audience]);
            // The subject is checked where the claim mapping puts it.
            validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            // Time is checked against the gateway's clock, on every use.
            validation.validate_exp = false;
            validation.validate_nbf = false;
            sources.extend(jwks.clone());
            issuers.insert(
                c.issuer.clone(),
                TrustedIssuer {
                    validation,
                    keys,
                    jwks: jwks.clone(),
                    claims,
                    leeway: i64::try_from(c.leeway_secs).unwrap_or(i64::MAX),
                    max_lifetime: i64::try_from(c.max_token_lifetime_secs).unwrap_or(i64::MAX),
                    departments: c.departments.as_ref().map(|d| d.iter().cloned().collect()),
                    staff_roles: c.roles.clone(),
                    resident_id: c
                        .resident_id_claim
                        .as_deref()
                        .map(|p| p.split('.').map(str::to_owned).collect()),
                },
            );
        }
        Ok(Self {
            id: AUTHENTICATORS.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            issuers,
            operator: operator_department.to_owned(),
            cache: (0..CACHE_SHARDS)
                .map(|_| Mutex::new(HashMap::new()))
                .collect(),
            epoch,
            sources,
            max_token_bytes,
            cache_per_shard: CACHE_PER_SHARD,
            clock,
        })
    }

    /// Authenticates the value(s) of the `Authorization` header.
    /// `known_department` says whether a `dept` is registered in the policy in force.
    pub fn authenticate<'a>(
        &self,
        headers: impl Iterator<Item = &'a [u8]>,
        known_department: impl Fn(&str) -> bool,
    ) -> Result<Arc<Principal>, AuthError> {
        self.authenticate_on(headers, known_department, None)
    }

    /// As [`Self::authenticate`], for a request on a connection whose last
    /// verified token is in `memo`.
    pub fn authenticate_on<'a>(
        &self,
        mut headers: impl Iterator<Item = &'a [u8]>,
        known_department: impl Fn(&str) -> bool,
        memo: Option<&TokenMemo>,
    ) -> Result<Arc<Principal>, AuthError> {
        let value = headers.next().ok_or(AuthError::Missing)?;
        if headers.next().is_some() {
            return Err(AuthError::NotBearer);
        }
        let token = strip_bearer(value).ok_or(AuthError::NotBearer)?;
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge(self.max_token_bytes));
        }
        // Read before any key is: see `verified`.
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        let principal = match memo.and_then(|m| m.get(self.id, epoch, token)) {
            Some(p) => p,
            None => {
                let p = self.verified(token, epoch)?;
                if let Some(memo) = memo {
                    memo.put(self.id, epoch, token, p.clone());
                }
                p
            }
        };
        if principal.expires + self.leeway(&principal) <= self.clock.unix_secs() {
            return Err(AuthError::Expired);
        }
        if principal.resident.is_some() {
            return Err(AuthError::OutOfScope(format!(
                "issuer {} vouches for residents, whose tokens open only their own record (/v1/me/…)",
                principal.issuer
            )));
        }
        if !known_department(principal.dept.as_str()) {
            return Err(AuthError::UnknownDepartment);
        }
        self.check_scope(&principal)?;
        Ok(principal)
    }

    /// Authenticates a resident's token (from a `kind = "resident"`
    /// issuer); any other token is refused here, as a resident's is
    /// everywhere else.
    pub fn authenticate_resident<'a>(
        &self,
        mut headers: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Arc<Principal>, AuthError> {
        let value = headers.next().ok_or(AuthError::Missing)?;
        if headers.next().is_some() {
            return Err(AuthError::NotBearer);
        }
        let token = strip_bearer(value).ok_or(AuthError::NotBearer)?;
        if token.len() > self.max_token_bytes {
            return Err(AuthError::TooLarge(self.max_token_bytes));
        }
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        let principal = self.verified(token, epoch)?;
        if principal.expires + self.leeway(&principal) <= self.clock.unix_secs() {
            return Err(AuthError::Expired);
        }
        if principal.resident.is_none() {
            return Err(AuthError::OutOfScope(format!(
                "issuer {} vouches for departments' staff; /v1/me/… is a resident's own record, opened by a resident's token",
                principal.issuer
            )));
        }
        let issuer = self
            .issuers
            .get(&principal.issuer)
            .ok_or(AuthError::UnknownIssuer)?;
        if issuer.jwks.as_ref().is_some_and(|j| !j.usable()) {
            return Err(AuthError::KeysUnavailable);
        }
        Ok(principal)
    }

    /// The principal of a token from the cache of verified tokens, or
    /// verified now (and cached once it is valid). `epoch` was read before
    /// any key: a token verified with a key a new set withdrew is cached
    /// under the epoch before the change, and so verified again after it.
    fn verified(&self, token: &[u8], epoch: u64) -> Result<Arc<Principal>, AuthError> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
        let mut key = [0u8; 32];
        key.copy_from_slice(digest.as_ref());
        let shard = &self.cache[usize::from(key[0]) % CACHE_SHARDS];

        let cached = shard.lock().ok().and_then(|m| {
            m.get(&key)
                .filter(|(e, _)| *e == epoch)
                .map(|(_, p)| p.clone())
        });
        let principal = match cached {
            Some(p) => p,
            None => {
                let (p, nbf) = self.verify(token)?;
                if let Some(nbf) = nbf {
                    // Not cached until valid: the cache only holds usable tokens.
                    if nbf > self.clock.unix_secs() + self.leeway(&p) {
                        return Err(AuthError::NotYetValid);
                    }
                }
                let p = Arc::new(p);
                if let Ok(mut m) = shard.lock() {
                    if m.len() >= self.cache_per_shard {
                        let now = self.clock.unix_secs();
                        m.retain(|_, (e, v)| *e == epoch && v.expires > now);
                        if m.len() >= self.cache_per_shard {
                            m.clear();
                        }
                    }
                    m.insert(key, (epoch, p.clone()));
                }
                p
            }
        };
        Ok(principal)
    }

    /// Whether the principal's issuer may vouch for its department and its
    /// staff roles: only the operator's own issuer mints staff.
    fn check_scope(&self, p: &Principal) -> Result<(), AuthError> {
        let Some(issuer) = self.issuers.get(&p.issuer) else {
            return Err(AuthError::UnknownIssuer);
        };
        // A cached token too: past the stale bound, the issuer's keys are
        // not trusted to have verified it.
        if issuer.jwks.as_ref().is_some_and(|j| !j.usable()) {
            return Err(AuthError::KeysUnavailable);
        }
        let dept = p.dept.as_str();
        let named = match &issuer.departments {
            Some(list) => list.contains(dept),
            None => dept != self.operator,
        };
        if !named {
            return Err(AuthError::OutOfScope(format!(
                "issuer {} may not vouch for department {dept}",
                p.issuer
            )));
        }
        if let Some(role) = p.roles.iter().find(|r| {
            STAFF_ROLES.contains(&r.as_str()) && !issuer.staff_roles.iter().any(|s| s == r.as_str())
        }) {
            return Err(AuthError::OutOfScope(format!(
                "issuer {} may not vouch for the role {role}",
                p.issuer
            )));
        }
        Ok(())
    }

    /// The longest any accepted token can still be valid, in seconds: a
    /// deny-list entry that lives this long outlives every token it names.
    pub fn longest_token_life_secs(&self) -> i64 {
        self.issuers
            .values()
            .map(|i| i.max_lifetime.saturating_add(i.leeway))
            .max()
            .unwrap_or(0)
    }

    fn leeway(&self, p: &Principal) -> i64 {
        self.issuers.get(&p.issuer).map_or(0, |i| i.leeway)
    }

    fn verify(&self, token: &[u8]) -> Result<(Principal, Option<i64>), AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Malformed)?;
        // The issuer is read before verification only to choose the key; the
        // verified claims are checked against it again by jsonwebtoken.
        let iss = peek_issuer(token).ok_or(AuthError::Malformed)?;
        let issuer = self.issuers.get(&iss).ok_or(AuthError::UnknownIssuer)?;
        if !issuer.validation.algorithms.contains(&header.alg) {
            return Err(AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)));
        }
        let published = match &issuer.jwks {
            Some(source) => Some(source.keys().ok_or(AuthError::KeysUnavailable)?),
            None => None,
        };
        let key = match &published {
            Some(set) => set
                .key(header.kid.as_deref(), header.alg)
                .ok_or(AuthError::UnknownKey)?,
            None => issuer
                .keys
                .iter()
                .find(|(alg, _)| *alg == header.alg)
                .map(|(_, key)| key)
                .ok_or_else(|| AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg)))?,
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
            token,
            key,
            &issuer.validation,
        )
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            match e.kind() {
                K::InvalidSignature
                | K::InvalidEcdsaKey
                | K::InvalidEddsaKey
                | K::InvalidRsaKey(_) => AuthError::BadSignature,
                K::InvalidAudience => AuthError::WrongAudience,
                K::InvalidIssuer => AuthError::UnknownIssuer,
                K::InvalidAlgorithm | K::MissingAlgorithm => {
                    AuthError::AlgorithmNotAllowed(format!("{:?}", header.alg))
                }
                K::MissingRequiredClaim(c) => AuthError::BadClaim(format!("{c} is required")),
                K::Json(err) => AuthError::BadClaim(claim_message(&err.to_string())),
                _ => AuthError::Malformed,
            }
        })?;
        if let Some(path) = &issuer.resident_id {
            return Self::resident_principal(&data.claims, path, issuer, iss, &self.clock);
        }
        let c = Claims::read(&data.claims, &issuer.claims)?;
        // A token lives at most the issuer's maximum (from iat, and from now):
        // a deny-list entry that lives that long outlives every token it names.
        let longest = issuer.max_lifetime.saturating_add(issuer.leeway);
        let lifetime = c.iat.map_or(0, |iat| c.exp.saturating_sub(iat));
        if c.exp.saturating_sub(self.clock.unix_secs()) > longest || lifetime > longest {
            return Err(AuthError::BadClaim(format!(
                "exp is more than {} seconds after iat or after now: this issuer's tokens may live at most that long",
                issuer.max_lifetime
            )));
        }
        Ok((
            Principal {
                dept: c.dept,
                subject: c.sub.into(),
                roles: c.roles,
                issuer: iss,
                expires: c.exp,
                token_id: c.jti,
                issued_at: c.iat,
                bound_certificate: c.bound_certificate,
                resident: None,
            },
            c.nbf,
        ))
    }

    /// The principal of a resident issuer's verified claims: the ID number
    /// at `path` (valid, checksum included), `exp`, and the optional
    /// `nbf`, `iat`, `jti`; nothing else of the token is kept.
    fn resident_principal(
        claims: &serde_json::Map<String, serde_json::Value>,
        path: &[String],
        issuer: &TrustedIssuer,
        iss: String,
        clock: &Clock,
    ) -> Result<(Principal, Option<i64>), AuthError> {
        let bad = |m: String| AuthError::BadClaim(m);
        let time = |n: &str| match claims.get(n) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(format!("{n} must be a number of seconds"))),
        };
        let exp = time("exp")?.ok_or_else(|| bad("exp is required".into()))?;
        let iat = time("iat")?;
        let name = path.join(".");
        let id = claim_at(claims, path)
            .and_then(|v| v.as_str())
            .ok_or_else(|| bad(format!("{name} (the resident's ID number) is required")))?;
        let resident = crate::domain::ResidentId::parse(id)
            .map_err(|_| bad(format!("{name} is not a valid resident ID number")))?;
        let longest = issuer.max_lifetime.saturating_add(issuer.leeway);
        let lifetime = iat.map_or(0, |iat| exp.saturating_sub(iat));
        if exp.saturating_sub(clock.unix_secs()) > longest || lifetime > longest {
            return Err(bad(format!(
                "exp is more than {} seconds after iat or after now: this issuer's tokens may live at most that long",
                issuer.max_lifetime
            )));
        }
        let jti = match claims.get("jti") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| bad("jti must be a string".into()))?
                    .to_owned(),
            ),
        };
        let residents = DeptId::parse(RESIDENTS).map_err(|_| AuthError::Malformed)?;
        let role = Role::parse("resident").map_err(|_| AuthError::Malformed)?;
        Ok((
            Principal {
                dept: residents,
                subject: RESIDENTS.into(),
                roles: vec![role],
                issuer: iss,
                expires: exp,
                token_id: jti,
                issued_at: iat,
                bound_certificate: bound_certificate(claims)?,
                resident: Some(resident),
            },
            time("nbf")?,
        ))
    }

    /// Whether any issuer publishes its keys (then a token naming an
    /// unknown key may wait for a fetch: [`Self::fetch_keys_for`]).
    pub fn publishes_keys(&self) -> bool {
        self.sources.iter().any(|s| s.refetches())
    }

    /// Before a token is verified: if its issuer publishes its keys and the
    /// set lacks the key the token names (or has none yet), fetch the set
    /// now, at most once per `jwks_min_refetch_secs`, so that a key the
    /// identity provider just began signing with is accepted at once.
    pub async fn fetch_keys_for<'a>(&self, mut headers: impl Iterator<Item = &'a [u8]>) {
        let Some(token) = headers.next().and_then(strip_bearer) else {
            return;
        };
        if token.len() > self.max_token_bytes {
            return;
        }
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return;
        };
        let Some(source) = peek_issuer(token)
            .and_then(|iss| self.issuers.get(&iss))
            .and_then(|i| i.jwks.clone())
            .filter(|s| s.refetches())
        else {
            return;
        };
        let known = source.keys().is_some_and(|set| match &header.kid {
            Some(kid) => set.has(kid),
            None => set.key(None, header.alg).is_some(),
        });
        if !known {
            source.refetch_for_unknown_kid().await;
        }
    }

    /// The issuers' published key sets.
    pub fn key_sets(&self) -> &[Arc<JwksSource>] {
        &self.sources
    }

    /// The published key sets' state, for `/readyz`.
    pub fn key_sources(&self) -> Vec<JwksStatus> {
        self.sources.iter().map(|s| s.status()).collect()
    }
}

/// The claims the gateway reads, from wherever the issuer puts them.
struct Claims {
    sub: String,
    exp: i64,
    nbf: Option<i64>,
    dept: DeptId,
    roles: Vec<Role>,
    jti: Option<String>,
    iat: Option<i64>,
    bound_certificate: Option<[u8; 32]>,
}

impl Claims {
    fn read(
        claims: &serde_json::Map<String, serde_json::Value>,
        paths: &ClaimPaths,
    ) -> Result<Self, AuthError> {
        let bad = |m: String| AuthError::BadClaim(m);
        let name = |p: &[String]| p.join(".");
        let time = |n: &str| match claims.get(n) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| bad(format!("{n} must be a number of seconds"))),
        };
        let exp = time("exp")?.ok_or_else(|| bad("exp is required".into()))?;
        let text = |p: &[String]| match claim_at(claims, p) {
            None => Err(bad(format!("{} is required", name(p)))),
            Some(v) => v
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("{} must be a string", name(p)))),
        };
        let sub = text(&paths.subject)?;
        let dept =
            DeptId::parse(&text(&paths.department)?).map_err(|_| AuthError::UnknownDepartment)?;
        let roles = match claim_at(claims, &paths.roles) {
            None => return Err(bad(format!("{} is required", name(&paths.roles)))),
            Some(v) => v
                .as_array()
                .ok_or_else(|| bad("roles must be an array of role codes".into()))?,
        };
        let mut parsed = Vec::with_capacity(roles.len());
        for r in roles {
            let role = r.as_str().map(Role::parse);
            match role {
                Some(Ok(role)) => parsed.push(role),
                // An identity provider's own roles (`default-roles-…`) are left out.
                _ if !paths.own_names => {}
                _ => {
                    return Err(bad("roles holds a value that is not a role code".into()));
                }
            }
        }
        if sub.is_empty() || sub.len() > 128 || sub.chars().any(char::is_control) {
            return Err(bad(format!(
                "{} must be 1 to 128 printable characters",
                name(&paths.subject)
            )));
        }
        let jti = match claims.get("jti") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| bad("jti must be a string".into()))?
                    .to_owned(),
            ),
        };
        let bound_certificate = bound_certificate(claims)?;
        Ok(Self {
            sub,
            exp,
            nbf: time("nbf")?,
            dept,
            roles: parsed,
            jti,
            iat: time("iat")?,
            bound_certificate,
        })
    }
}

/// The client certificate a token is bound to (`cnf.x5t#S256`, RFC 8705),
/// if it names one.
fn bound_certificate(
    claims: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<[u8; 32]>, AuthError> {
    match claims.get("cnf").and_then(|c| c.get("x5t#S256")) {
        None => Ok(None),
        Some(t) => t
            .as_str()
            .and_then(|t| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(t.trim_end_matches('='))
                    .ok()
            })
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(Some)
            .ok_or_else(|| {
                AuthError::BadClaim(
                    "cnf.x5t#S256 must be the base64url SHA-256 thumbprint of a certificate".into(),
                )
            }),
    }
}

/// The keys an issuer configures itself (a PEM file, an HS256 secret), per
/// algorithm; none for the asymmetric algorithms when it publishes a set.
fn configured_keys(
    c: &IssuerConfig,
    algorithms: &[Algorithm],
    published: bool,
) -> Result<Vec<(Algorithm, DecodingKey)>, String> {
    let mut keys = Vec::new();
    // A published set (or the PEM file's own source) holds the asymmetric keys.
    let pem = match (&c.public_key, published) {
        (Some(path), false) => Some(
            std::fs::read(path)
                .map_err(|e| format!("public key {} cannot be read: {e}", path.display()))?,
        ),
        _ => None,
    };
    for (name, &alg) in c.algorithms.iter().zip(algorithms) {
        let key = match alg {
            Algorithm::HS256 => {
                let var = c.hs256_secret_env.as_deref().ok_or_else(|| {
                    String::from("HS256 needs hs256_secret_env naming the secret's variable")
                })?;
                let secret = std::env::var(var)
                    .map_err(|_| format!("environment variable {var} is not set"))?;
                if secret.len() < 32 {
                    return Err(format!(
                        "the HS256 secret in {var} is shorter than 32 bytes"
                    ));
                }
                DecodingKey::from_secret(secret.as_bytes())
            }
            // The issuer's published set holds these.
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA if published => {
                continue;
            }
            Algorithm::ES256 | Algorithm::RS256 | Algorithm::EdDSA => {
                let pem = pem.as_deref().ok_or_else(|| {
                    format!(
                        "{name} needs public_key, or a JWK Set (jwks_url, jwks_file or discovery)"
                    )
                })?;
                let key = match alg {
                    Algorithm::ES256 => DecodingKey::from_ec_pem(pem),
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(pem),
                    _ => DecodingKey::from_ed_pem(pem),
                };
                key.map_err(|e| format!("public key is not a {name} key: {e}"))?
            }
            _ => {
                return Err(format!(
                    "algorithm {name} is not supported; use ES256, RS256, EdDSA or HS256"
                ));
            }
        };
        keys.push((alg, key));
    }
    Ok(keys)
}

fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn peek_issuer(token: &[u8]) -> Option<String> {
    let mut parts = token.split(|b| *b == b'.');
    let _header = parts.next()?;
    let payload = parts.next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice::<IssuerOnly>(&bytes).ok()?.iss
}

/// serde's message names the claim; keep only the part a caller can act on.
fn claim_message(serde_msg: &str) -> String {
    let msg = serde_msg.split(" at line").next().unwrap_or(serde_msg);
    if msg.contains("roles") || msg.contains("sequence") {
        "roles must be an array of role codes".to_owned()
    } else {
        msg.replace('`', "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    struct Issuer {
        _dir: tempfile::TempDir,
        key: EncodingKey,
        config: IssuerConfig,
    }

    fn issuer() -> Issuer {
        let dir = tempfile::tempdir().unwrap();
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let public = dir.path().join("issuer.pub.pem");
        std::fs::write(&public, pair.public_key_pem()).unwrap();
        let config: IssuerConfig = toml::from_str(&format!(
            "issuer = \"idp\"\naudience = \"gw\"\nalgorithms = [\"ES256\"]\npublic_key = {:?}\nleeway_secs = 30\n",
            public.display().to_string()
        ))
        .unwrap();
        Issuer {
            key: EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap(),
            config,
            _dir: dir,
        }
    }

    const NOW: i64 = 1_800_000_000;

    fn token(i: &Issuer, sub: &str, extra: serde_json::Value) -> String {
        let mut claims = json!({
            "iss": "idp", "aud": "gw", "sub": sub, "dept": "minzheng",
            "roles": ["dibao_reviewer"], "iat": NOW, "exp": NOW + 600,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &i.key).unwrap()
    }

    fn authenticator(i: &Issuer, max_token_bytes: usize) -> Authenticator {
        let clock = Clock::manual(time::OffsetDateTime::from_unix_timestamp(NOW).unwrap());
        Authenticator::new(
            std::slice::from_ref(&i.config),
            "shujuju",
            max_token_bytes,
            clock,
        )
        .unwrap()
    }

    fn check(a: &Authenticator, token: &str) -> Result<Arc<Principal>, AuthError> {
        let header = format!("Bearer {token}");
        a.authenticate(std::iter::once(header.as_bytes()), |_| true)
    }

    #[test]
    fn a_token_of_exactly_the_limit_passes_and_one_byte_more_does_not() {
        let i = issuer();
        let t = token(&i, "clerk-007", json!({}));
        assert!(check(&authenticator(&i, t.len()), &t).is_ok());
        assert_eq!(
            check(&authenticator(&i, t.len() - 1), &t).unwrap_err(),
            AuthError::TooLarge(t.len() - 1)
        );
        // Far over the limit too (not only at its edge).
        assert_eq!(
            check(&authenticator(&i, t.len() / 2), &t).unwrap_err(),
            AuthError::TooLarge(t.len() / 2)
        );
    }

    #[test]
    fn not_before_is_honoured_up_to_the_leeway_and_not_a_second_more() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let at_edge = token(&i, "a", json!({"nbf": NOW + 30}));
        assert!(check(&a, &at_edge).is_ok());
        let early = token(&i, "b", json!({"nbf": NOW + 31}));
        assert_eq!(check(&a, &early).unwrap_err(), AuthError::NotYetValid);
    }

    #[test]
    fn each_refusal_says_why() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let other = issuer();
        let forged = token(&other, "a", json!({}));
        assert_eq!(check(&a, &forged).unwrap_err(), AuthError::BadSignature);
        let elsewhere = token(&i, "a", json!({"aud": "another-gateway"}));
        assert_eq!(check(&a, &elsewhere).unwrap_err(), AuthError::WrongAudience);
        let mut claims = json!({
            "iss": "idp", "sub": "a", "dept": "minzheng", "roles": [], "iat": NOW, "exp": NOW + 60,
        });
        let no_audience =
            jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &i.key).unwrap();
        assert_eq!(
            check(&a, &no_audience).unwrap_err(),
            AuthError::BadClaim("aud is required".into())
        );
        claims["aud"] = json!("gw");
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &claims,
            &EncodingKey::from_secret(b"not the issuer's key"),
        )
        .unwrap();
        assert_eq!(
            check(&a, &hs384).unwrap_err(),
            AuthError::AlgorithmNotAllowed("HS384".into())
        );
    }

    /// A token lives at most the issuer's maximum plus its leeway, counted
    /// from iat and from now: either one alone is enough to refuse it.
    #[test]
    fn a_token_lives_at_most_the_issuers_maximum() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let longest = 86_400 + 30;
        let at_most = token(&i, "a", json!({"exp": NOW + longest}));
        assert!(check(&a, &at_most).is_ok());
        let from_now = token(
            &i,
            "b",
            json!({"iat": NOW - 1000, "exp": NOW + longest + 1}),
        );
        assert!(matches!(check(&a, &from_now), Err(AuthError::BadClaim(_))));
        // Issued long ago, expiring soon: too long from iat though not from now.
        let from_iat = token(&i, "c", json!({"iat": NOW - longest, "exp": NOW + 1}));
        assert!(matches!(check(&a, &from_iat), Err(AuthError::BadClaim(_))));
        let without_iat = jsonwebtoken::encode(
            &Header::new(Algorithm::ES256),
            &json!({"iss": "idp", "aud": "gw", "sub": "d", "dept": "minzheng", "roles": [], "exp": NOW + longest + 1}),
            &i.key,
        )
        .unwrap();
        assert!(matches!(
            check(&a, &without_iat),
            Err(AuthError::BadClaim(_))
        ));
        let bad_roles = token(&i, "e", json!({"roles": "dibao_reviewer"}));
        assert_eq!(
            check(&a, &bad_roles).unwrap_err(),
            AuthError::BadClaim("roles must be an array of role codes".into())
        );
    }

    #[test]
    fn a_subject_is_1_to_128_printable_characters() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let longest = "s".repeat(128);
        assert!(check(&a, &token(&i, &longest, json!({}))).is_ok());
        for bad in [String::new(), "s".repeat(129), "clerk\n007".into()] {
            assert_eq!(
                check(&a, &token(&i, &bad, json!({}))).unwrap_err(),
                AuthError::BadClaim("sub must be 1 to 128 printable characters".into()),
                "{bad:?}"
            );
        }
    }

    /// An issuer vouches only for the staff roles it names, each exactly.
    #[test]
    fn an_issuer_vouches_only_for_the_staff_roles_it_names() {
        let mut i = issuer();
        i.config.departments = Some(vec!["shujuju".into()]);
        i.config.roles = vec!["policy_admin".into()];
        let a = authenticator(&i, 8192);
        let staff = |role: &str| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::ES256),
                &json!({
                    "iss": "idp", "aud": "gw", "sub": role, "dept": "shujuju",
                    "roles": [role], "iat": NOW, "exp": NOW + 60,
                }),
                &i.key,
            )
            .unwrap()
        };
        assert!(check(&a, &staff("policy_admin")).is_ok());
        assert!(matches!(
            check(&a, &staff("privacy_officer")).unwrap_err(),
            AuthError::OutOfScope(_)
        ));
        // Not a staff role: the issuer's list does not limit it.
        assert!(check(&a, &staff("archivist")).is_ok());
    }

    #[test]
    fn expiry_is_honoured_up_to_the_leeway_and_not_a_second_more() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let soon = token(&i, "a", json!({"exp": NOW + 10}));
        assert!(check(&a, &soon).is_ok());
        let within = token(&i, "b", json!({"iat": NOW - 100, "exp": NOW - 29}));
        assert!(check(&a, &within).is_ok());
        let past = token(&i, "c", json!({"iat": NOW - 100, "exp": NOW - 30}));
        assert_eq!(check(&a, &past).unwrap_err(), AuthError::Expired);
    }

    fn check_on(
        a: &Authenticator,
        token: &str,
        memo: &TokenMemo,
    ) -> Result<Arc<Principal>, AuthError> {
        let header = format!("Bearer {token}");
        a.authenticate_on(std::iter::once(header.as_bytes()), |_| true, Some(memo))
    }

    /// A connection's memo serves only the very bytes it verified, only to
    /// the authenticator that verified them, and never past their expiry.
    #[test]
    fn a_connections_token_memo_serves_only_the_same_bytes_to_its_own_authenticator() {
        let i = issuer();
        let a = authenticator(&i, 8192);
        let memo = TokenMemo::default();
        let t = token(&i, "a", json!({"exp": NOW + 10}));
        assert_eq!(&*check_on(&a, &t, &memo).unwrap().subject, "a");
        // Served from the memo: the same principal, not a copy.
        let first = check_on(&a, &t, &memo).unwrap();
        assert!(Arc::ptr_eq(&first, &check_on(&a, &t, &memo).unwrap()));
        // Other bytes are verified on their own: a changed signature fails,
        // whatever the memo holds.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(
            check_on(&a, &forged, &memo).unwrap_err(),
            AuthError::BadSignature
        );
        // An authenticator of other issuers does not take the memo's word:
        // one trusting another key refuses the memoized token.
        let other = authenticator(&issuer(), 8192);
        assert!(check_on(&a, &t, &memo).is_ok());
        assert_eq!(
            check_on(&other, &t, &memo).unwrap_err(),
            AuthError::BadSignature
        );
        // Expiry is checked on every use, memo or not.
        assert!(check_on(&a, &t, &memo).is_ok());
        a.clock.advance(std::time::Duration::from_secs(40));
        assert_eq!(check_on(&a, &t, &memo).unwrap_err(), AuthError::Expired);
    }

    /// The cache of verified tokens stays bounded however many distinct
    /// valid tokens arrive, and a full shard first drops the expired ones.
    #[test]
    fn the_verified_token_cache_stays_bounded() {
        let i = issuer();
        let mut a = authenticator(&i, 8192);
        a.cache_per_shard = 4;
        let shard_of = |t: &str| {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
            usize::from(d.as_ref()[0]) % CACHE_SHARDS
        };
        // Tokens that land in shard 0: three that expire at once, then more.
        let mut live = Vec::new();
        let mut n = 0;
        while live.len() < 12 {
            n += 1;
            let exp = if live.len() < 3 { NOW + 1 } else { NOW + 600 };
            let t = token(&i, &format!("s{n}"), json!({"exp": exp}));
            if shard_of(&t) == 0 {
                live.push(t);
            }
        }
        for t in &live[..4] {
            check(&a, t).unwrap();
        }
        assert_eq!(a.cache[0].lock().unwrap().len(), 4);
        a.clock.advance(std::time::Duration::from_secs(2));
        // Full: the three expired go first, the live one stays.
        check(&a, &live[4]).unwrap();
        assert_eq!(a.cache[0].lock().unwrap().len(), 2);
        for t in &live[5..] {
            check(&a, t).unwrap();
            assert!(a.cache[0].lock().unwrap().len() <= 4);
        }
    }
}
