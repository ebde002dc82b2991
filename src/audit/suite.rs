//! The cryptographic suite of an audit chain: the hash that links events and
//! the signature on checkpoints.
//!
//! - `international`: SHA-256 (aws-lc-rs) and Ed25519.
//! - `gm` (国密, for 密评 under GB/T 39786-2021): SM3 (GM/T 0004-2012) and
//!   SM2 signatures (GM/T 0003-2012) with the default signer ID of GM/T 0009
//!   (`1234567812345678`), DER-encoded as GM/T 0009 specifies; RustCrypto's
//!   `sm3` and `sm2` crates do the arithmetic.
//!
//! Events record their suite in their encoding version byte, checkpoints
//! name theirs, and exports list the suites they hold, so a verifier never
//! guesses. Public keys are told apart by their SPKI algorithm.

use std::path::Path;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sm2::dsa::signature::{Signer, Verifier};
use sm2::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, der};

/// A 32-byte digest (SHA-256 or SM3).
pub type Hash = [u8; 32];

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> Hash {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The signer ID of GM/T 0009-2012 (used when none is agreed).
pub const SM2_DEFAULT_ID: &str = "1234567812345678";

/// A chain's hash and signature algorithms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Suite {
    /// SHA-256 chain, Ed25519 checkpoints.
    #[default]
    International,
    /// SM3 chain, SM2 checkpoints.
    Gm,
}

impl Suite {
    /// Its name in configuration, checkpoints and exports.
    pub fn name(self) -> &'static str {
        match self {
            Self::International => "international",
            Self::Gm => "gm",
        }
    }

    /// From its name.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "international" => Some(Self::International),
            "gm" => Some(Self::Gm),
            _ => None,
        }
    }

    /// The chain hash of `bytes`.
    pub fn hash(self, bytes: &[u8]) -> Hash {
        match self {
            Self::International => sha256(bytes),
            Self::Gm => sm3(bytes),
        }
    }

    /// The hash algorithm's name.
    pub fn hash_name(self) -> &'static str {
        match self {
            Self::International => "SHA-256",
            Self::Gm => "SM3",
        }
    }

    /// The signature algorithm's name.
    pub fn signature_name(self) -> &'static str {
        match self {
            Self::International => "Ed25519",
            Self::Gm => "SM2",
        }
    }
}

impl std::fmt::Display for Suite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// SM3 of `bytes`.
pub fn sm3(bytes: &[u8]) -> Hash {
    use sm3::Digest as _;
    sm3::Sm3::digest(bytes).into()
}

/// A public key that verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Whose algorithm.
    pub suite: Suite,
    /// Ed25519: the raw 32 bytes; SM2: the uncompressed SEC1 point (65 bytes).
    pub raw: Vec<u8>,
}

const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

impl PublicKey {
    /// The key id recorded in checkpoints: the first 8 bytes of the SHA-256
    /// of the raw key, hex (an identifier, not a security function).
    pub fn key_id(&self) -> String {
        crate::domain::hex(&sha256(&self.raw)[..8])
    }

    /// Whether `signature` over `message` verifies with this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        match self.suite {
            Suite::International => aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ED25519,
                &self.raw,
            )
            .verify(message, signature)
            .is_ok(),
            Suite::Gm => {
                let Ok(key) = sm2::dsa::VerifyingKey::from_sec1_bytes(SM2_DEFAULT_ID, &self.raw)
                else {
                    return false;
                };
                let Some(sig) = sm2_signature_from_der(signature) else {
                    return false;
                };
                key.verify(message, &sig).is_ok()
            }
        }
    }

    /// As SPKI PEM.
    pub fn to_pem(&self) -> String {
        match self.suite {
            Suite::International => {
                let mut der = SPKI_ED25519_PREFIX.to_vec();
                der.extend_from_slice(&self.raw);
                pem_block("PUBLIC KEY", &der)
            }
            // `raw` comes from a parsed SM2 key (a PEM read, or the signer's own).
            Suite::Gm => sm2::PublicKey::from_sec1_bytes(&self.raw)
                .ok()
                .and_then(|k| k.to_public_key_pem(Default::default()).ok())
                .unwrap_or_default(),
        }
    }

    /// Every public key in a PEM text (one or more `PUBLIC KEY` blocks,
    /// Ed25519 or SM2); blocks of other algorithms are skipped.
    pub fn all_from_pem(text: &str) -> Vec<Self> {
        let mut keys = Vec::new();
        let mut body = None::<String>;
        for line in text.lines() {
            let line = line.trim();
            if line == "-----BEGIN PUBLIC KEY-----" {
                body = Some(String::new());
            } else if line == "-----END PUBLIC KEY-----" {
                if let Some(b64) = body.take()
                    && let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64)
                    && let Some(key) = Self::from_spki_der(&der)
                {
                    keys.push(key);
                }
            } else if let Some(b) = body.as_mut() {
                b.push_str(line);
            }
        }
        keys
    }

    fn from_spki_der(der: &[u8]) -> Option<Self> {
        if let Some(raw) = der.strip_prefix(&SPKI_ED25519_PREFIX[..]) {
            return (raw.len() == 32).then(|| Self {
                suite: Suite::International,
                raw: raw.to_vec(),
            });
        }
        let key = sm2::PublicKey::from_public_key_der(der).ok()?;
        Some(Self {
            suite: Suite::Gm,
            raw: key.to_sec1_bytes().to_vec(),
        })
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// An SM2 signature as DER `SEQUENCE { INTEGER r, INTEGER s }` (GM/T 0009).
fn sm2_signature_to_der(sig: &sm2::dsa::Signature) -> Vec<u8> {
    use der::Encode as _;
    let (r, s) = (sig.r_bytes(), sig.s_bytes());
    let mut seq = der::asn1::SequenceOf::<der::asn1::UintRef<'_>, 2>::new();
    let encoded = der::asn1::UintRef::new(&r)
        .and_then(|r| seq.add(r))
        .and_then(|()| der::asn1::UintRef::new(&s))
        .and_then(|s| seq.add(s))
        .and_then(|()| seq.to_der());
    encoded.unwrap_or_default()
}

/// The inverse of [`sm2_signature_to_der`]; strict DER only.
fn sm2_signature_from_der(der: &[u8]) -> Option<sm2::dsa::Signature> {
    use der::Decode as _;
    let seq = der::asn1::SequenceOf::<der::asn1::UintRef<'_>, 2>::from_der(der).ok()?;
    let mut parts = seq.iter();
    let pad = |u: &der::asn1::UintRef<'_>| -> Option<[u8; 32]> {
        let bytes = u.as_bytes();
        if bytes.len() > 32 {
            return None;
        }
        let mut out = [0u8; 32];
        out[32 - bytes.len()..].copy_from_slice(bytes);
        Some(out)
    };
    let r = pad(parts.next()?)?;
    let s = pad(parts.next()?)?;
    sm2::dsa::Signature::from_scalars(r, s).ok()
}

/// A key that signs checkpoints.
pub enum SigningKey {
    /// Ed25519.
    Ed25519(aws_lc_rs::signature::Ed25519KeyPair),
    /// SM2 with the default signer ID.
    Sm2(Box<sm2::dsa::SigningKey>),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("suite", &self.suite())
            .field("key_id", &self.public_key().key_id())
            .finish()
    }
}

impl SigningKey {
    /// Whose algorithm.
    pub fn suite(&self) -> Suite {
        match self {
            Self::Ed25519(_) => Suite::International,
            Self::Sm2(_) => Suite::Gm,
        }
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        use aws_lc_rs::signature::KeyPair as _;
        match self {
            Self::Ed25519(k) => PublicKey {
                suite: Suite::International,
                raw: k.public_key().as_ref().to_vec(),
            },
            Self::Sm2(k) => PublicKey {
                suite: Suite::Gm,
                raw: k.verifying_key().to_sec1_bytes().to_vec(),
            },
        }
    }

    /// Signs `message` (Ed25519: the raw signature; SM2: DER).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Self::Ed25519(k) => k.sign(message).as_ref().to_vec(),
            Self::Sm2(k) => sm2_signature_to_der(&k.sign(message)),
        }
    }

    /// Loads an SM2 private key (PKCS#8 PEM, as OpenSSL and `tongban audit
    /// keygen --suite gm` write it).
    pub fn sm2_from_pem(path: &Path) -> std::io::Result<Self> {
        let invalid = |why: String| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {why}", path.display()),
            )
        };
        let pem = std::fs::read_to_string(path)?;
        let secret = sm2::SecretKey::from_pkcs8_pem(&pem)
            .map_err(|e| invalid(format!("is not an SM2 PKCS#8 PEM private key: {e}")))?;
        let key = sm2::dsa::SigningKey::new(SM2_DEFAULT_ID, &secret)
            .map_err(|e| invalid(format!("is not a usable SM2 key: {e}")))?;
        Ok(Self::Sm2(Box::new(key)))
    }

    /// Generates an SM2 key and writes it as PKCS#8 PEM (mode 0600).
    pub fn sm2_generate(path: &Path) -> std::io::Result<Self> {
        let mut seed = [0u8; 32];
        let secret = loop {
            aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut seed)
                .map_err(|_| std::io::Error::other("no randomness"))?;
            if let Ok(k) = sm2::SecretKey::from_slice(&seed) {
                break k;
            }
        };
        let pem = secret
            .to_pkcs8_pem(Default::default())
            .map_err(|e| std::io::Error::other(format!("cannot encode the SM2 key: {e}")))?;
        super::pseudonym::write_private(path, pem.as_bytes())?;
        Self::sm2_from_pem(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sm3_matches_the_standards_examples() {
        // GM/T 0004-2012, appendix A: "abc" and "abcd" × 16.
        assert_eq!(
            crate::domain::hex(&sm3(b"abc")),
            "66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0"
        );
        assert_eq!(
            crate::domain::hex(&sm3("abcd".repeat(16).as_bytes())),
            "debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732"
        );
    }

    #[test]
    fn sm2_signatures_verify_with_their_key_only_and_keys_round_trip_as_pem() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::sm2_generate(&dir.path().join("k.pem")).unwrap();
        let public = key.public_key();
        let sig = key.sign(b"checkpoint");
        assert!(public.verify(b"checkpoint", &sig));
        assert!(!public.verify(b"checkpoinT", &sig));
        let other = SigningKey::sm2_generate(&dir.path().join("o.pem")).unwrap();
        assert!(!other.public_key().verify(b"checkpoint", &sig));
        assert_eq!(
            PublicKey::all_from_pem(&public.to_pem()),
            vec![public.clone()]
        );
        let again = SigningKey::sm2_from_pem(&dir.path().join("k.pem")).unwrap();
        assert_eq!(again.public_key(), public);
        // The DER form is strict: a trailing byte is refused.
        let mut longer = sig.clone();
        longer.push(0);
        assert!(!public.verify(b"checkpoint", &longer));
    }
}
