//! Signed answers (免提交): a compact JWS (RFC 7515, EdDSA over Ed25519) that
//! a consuming department keeps in its case file instead of a photocopy.
//!
//! The proof travels in the answer body (`proof`), not as a detached
//! signature over the body bytes: a case file keeps one self-contained
//! string whose payload says what was disclosed, to whom, why, and where in
//! the audit log it is recorded, and it verifies with any JOSE library and
//! the published JWKS, however the JSON around it was stored or re-indented.
//!
//! Keys live in `data_dir/answer-keys/`: `<kid>.key` (PKCS#8, mode 0600) for
//! every key ever used, and `current` naming the one that signs. Rotation
//! adds a key and makes it current; old public keys stay in the JWKS, so a
//! proof from last year still verifies.

use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::audit::event::{Hash, sha256};
use crate::audit::pseudonym::write_private;

/// The answer-signing keys' directory under the data directory.
pub const DIR: &str = "answer-keys";
/// The JWS `typ` of a proof.
pub const PROOF_TYPE: &str = "tongban-proof+jwt";

/// A key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

fn file_err(path: &Path, reason: impl ToString) -> KeyError {
    KeyError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// One answer-signing key pair.
struct Key {
    kid: String,
    pair: Ed25519KeyPair,
    created_ms: i64,
}

/// Makes the first answer-signing key under `data_dir` if there is none;
/// returns its key id if it made one. Only `tongban keys init` (and the
/// demo through it) calls this.
pub fn make_missing(data_dir: &Path) -> Result<Option<String>, KeyError> {
    if data_dir.join(DIR).join("current").exists() {
        return Ok(None);
    }
    rotate(data_dir).map(Some)
}

/// The answer-signing keys of a gateway: the current one signs, all are published.
pub struct AnswerKeys {
    current: usize,
    keys: Vec<Key>,
}

impl std::fmt::Debug for AnswerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerKeys")
            .field("current", &self.kid())
            .field("keys", &self.keys.len())
            .finish()
    }
}

fn kid_of(public: &[u8]) -> String {
    crate::domain::hex(&sha256(public)[..8])
}

/// Makes a new key in `data_dir/answer-keys/` and makes it the one that
/// signs; returns its key id. The keys before it stay published.
pub fn rotate(data_dir: &Path) -> Result<String, KeyError> {
    let dir = data_dir.join(DIR);
    std::fs::create_dir_all(&dir).map_err(|e| file_err(&dir, e))?;
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| file_err(&dir, "cannot generate an Ed25519 key"))?;
    let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| file_err(&dir, "cannot read the key just generated"))?;
    let kid = kid_of(pair.public_key().as_ref());
    let path = dir.join(format!("{kid}.key"));
    write_private(&path, doc.as_ref()).map_err(|e| file_err(&path, e))?;
    let current = dir.join("current");
    write_private(&current, kid.as_bytes()).map_err(|e| file_err(&current, e))?;
    Ok(kid)
}

impl AnswerKeys {
    /// Loads the keys under `data_dir`. None is an error naming `tongban
    /// keys init`: starting never makes a key.
    pub fn open(data_dir: &Path) -> Result<Self, KeyError> {
        let dir = data_dir.join(DIR);
        let current_path = dir.join("current");
        if !current_path.exists() {
            return Err(file_err(
                &dir,
                crate::keys::missing(&dir, crate::keys::Kind::Answer),
            ));
        }
        let current_kid = std::fs::read_to_string(&current_path)
            .map_err(|e| file_err(&current_path, e))?
            .trim()
            .to_owned();
        let mut keys = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| file_err(&dir, e))? {
            let path = entry.map_err(|e| file_err(&dir, e))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("key") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| file_err(&path, e))?;
            let pair = Ed25519KeyPair::from_pkcs8(&bytes)
                .map_err(|_| file_err(&path, "not an Ed25519 PKCS#8 key"))?;
            let created_ms = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            keys.push(Key {
                kid: kid_of(pair.public_key().as_ref()),
                pair,
                created_ms,
            });
        }
        keys.sort_by_key(|k| k.created_ms);
        let current = keys
            .iter()
            .position(|k| k.kid == current_kid)
            .ok_or_else(|| {
                file_err(
                    &current_path,
                    format!("names key {current_kid}, which is not in {}", dir.display()),
                )
            })?;
        Ok(Self { current, keys })
    }

    /// The key id that signs now.
    pub fn kid(&self) -> &str {
        &self.keys[self.current].kid
    }

    /// Every public key, as a JWK Set (RFC 7517): what verifies any proof
    /// this gateway issued.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .iter()
            .map(|k| {
                json!({
                    "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                    "kid": k.kid,
                    "x": URL_SAFE_NO_PAD.encode(k.pair.public_key().as_ref()),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// The compact JWS of `claims`, signed by the current key.
    pub fn sign(&self, claims: &Map<String, Value>) -> String {
        let key = &self.keys[self.current];
        let header = json!({"alg": "EdDSA", "typ": PROOF_TYPE, "kid": key.kid});
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string())
        );
        let sig = key.pair.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

/// The hash the audit log records for a proof: SHA-256 of its compact form.
pub fn proof_hash(jws: &str) -> Hash {
    sha256(jws.trim().as_bytes())
}

/// Checks a compact JWS against a JWK Set: the `kid` must name an Ed25519
/// key of the set, the algorithm must be EdDSA, and the signature must hold.
/// Returns the header and the claims.
pub fn verify(jws: &str, jwks: &Value) -> Result<(Value, Map<String, Value>), String> {
    let jws = jws.trim();
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three base64url parts separated by dots)".into());
    };
    let decode = |part: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("the {what} is not base64url"))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| "the header is not JSON".to_owned())?;
    if header["alg"] != "EdDSA" {
        return Err(format!("algorithm {} is not EdDSA", header["alg"]));
    }
    let kid = header["kid"].as_str().ok_or("the header names no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid))
        .ok_or_else(|| format!("key {kid} is not in the JWK Set"))?;
    if jwk["kty"] != "OKP" || jwk["crv"] != "Ed25519" {
        return Err(format!("key {kid} is not an Ed25519 key"));
    }
    let x = jwk["x"]
        .as_str()
        .ok_or_else(|| format!("key {kid} has no public key (x)"))?;
    let public = decode(x, "key")?;
    let signature = decode(s, "signature")?;
    UnparsedPublicKey::new(&ED25519, &public)
        .verify(format!("{h}.{p}").as_bytes(), &signature)
        .map_err(|_| format!("the signature does not verify with key {kid}"))?;
    let claims: Map<String, Value> = serde_json::from_slice(&decode(p, "payload")?)
        .map_err(|_| "the payload is not a JSON object".to_owned())?;
    Ok((header, claims))
}

/// What a proof attests, in plain language (Chinese first, then English).
pub fn describe(claims: &Map<String, Value>) -> String {
    let s = |k: &str| match &claims.get(k) {
        Some(Value::String(v)) => v.clone(),
        Some(Value::Null) | None => "—".to_owned(),
        Some(other) => other.to_string(),
    };
    let grant = claims
        .get("grant")
        .map(|g| format!("{}@{}", g["id"].as_str().unwrap_or("?"), g["version"]))
        .unwrap_or_default();
    let disclosed = match (claims.get("record"), claims.get("results")) {
        (Some(Value::Object(r)), _) => r
            .iter()
            .map(|(k, v)| format!("  {k} = {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        (_, Some(Value::Array(items))) => items
            .iter()
            .map(|v| format!("  {v}"))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => "  —".to_owned(),
    };
    let seqs = match claims.get("last_seq") {
        Some(last) => format!("{}–{last}", s("audit_seq")),
        None => s("audit_seq"),
    };
    format!(
        "签名有效：网关节点 {node} 于 {time} 签发。\n\
         The signature is valid: issued by gateway node {node} at {time}.\n\n\
         使用部门 consumer: {consumer}（经办人 subject: {subject}）\n\
         用途 purpose: {purpose}；办件编号 case reference: {case_ref}\n\
         数据集 dataset: {dataset}；操作 operation: {operation}\n\
         身份证号 resident ID: {resident}\n\
         授权 grant: {grant}；审计序号 audit seq: {seqs}\n\n\
         披露内容 disclosed:\n{disclosed}\n",
        node = s("node"),
        time = s("time"),
        consumer = s("consumer"),
        subject = s("subject"),
        purpose = s("purpose"),
        case_ref = s("case_ref"),
        dataset = s("dataset"),
        operation = s("operation"),
        resident = s("resident_id"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_until_a_byte_changes_and_survives_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let err = AnswerKeys::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("tongban keys init"), "{err}");
        assert!(make_missing(dir.path()).unwrap().is_some());
        assert!(
            make_missing(dir.path()).unwrap().is_none(),
            "never a second"
        );
        let keys = AnswerKeys::open(dir.path()).unwrap();
        let mut claims = Map::new();
        claims.insert("dataset".into(), json!("gongan.hukou"));
        claims.insert("record".into(), json!({"name": "田浩"}));
        let jws = keys.sign(&claims);
        let (header, back) = verify(&jws, &keys.jwks()).unwrap();
        assert_eq!(header["kid"], keys.kid());
        assert_eq!(back, claims);

        // Any changed byte of the payload fails.
        let parts: Vec<&str> = jws.split('.').collect();
        let forged = URL_SAFE_NO_PAD
            .encode(json!({"dataset": "gongan.hukou", "record": {"name": "田浩浩"}}).to_string());
        assert!(verify(&format!("{}.{forged}.{}", parts[0], parts[2]), &keys.jwks()).is_err());
        // Another key under the same kid fails.
        let other_dir = tempfile::tempdir().unwrap();
        make_missing(other_dir.path()).unwrap();
        let other = AnswerKeys::open(other_dir.path()).unwrap();
        let mut jwks = other.jwks();
        jwks["keys"][0]["kid"] = json!(keys.kid());
        assert!(verify(&jws, &jwks).is_err());
        assert!(verify(&jws, &other.jwks()).is_err(), "unknown kid");

        // After a rotation the old proof still verifies, and new ones use the new key.
        let old_kid = keys.kid().to_owned();
        let new_kid = rotate(dir.path()).unwrap();
        let rotated = AnswerKeys::open(dir.path()).unwrap();
        assert_eq!(rotated.kid(), new_kid);
        assert_ne!(new_kid, old_kid);
        assert_eq!(rotated.jwks()["keys"].as_array().unwrap().len(), 2);
        assert!(verify(&jws, &rotated.jwks()).is_ok());
        let newer = rotated.sign(&claims);
        assert_eq!(verify(&newer, &rotated.jwks()).unwrap().0["kid"], new_kid);
    }
}
