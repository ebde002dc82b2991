//! Signed checkpoints: every N events or T seconds, the node signs (Ed25519)
//! the sequence number and hash of the head of its chain. Anyone with the
//! public key can then check that an exported or stored log is the one the
//! gateway wrote, up to each checkpoint, without trusting the gateway.
//!
//! The signed bytes are `b"tongban-checkpoint-v1\0"` followed by the postcard
//! encoding of [`Checkpoint`]. The key is `data_dir/audit-checkpoint.key`
//! (PKCS#8, mode 0600); `tongban audit pubkey` prints its public half.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::event::Hash;
use super::pseudonym::write_private;
use crate::policy::load::hex;

/// The hash and signature algorithms of a chain.
pub const SUITE_INTERNATIONAL: &str = "international";
const DOMAIN: &[u8] = b"tongban-checkpoint-v1\0";
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// What a checkpoint attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Encoding version.
    pub version: u8,
    /// The node whose chain this is.
    pub node: String,
    /// The sequence number of the head event.
    pub seq: u64,
    /// The head event's hash.
    pub head_hash: Hash,
    /// When it was signed, ms since the epoch.
    pub time_ms: i64,
    /// `international` (SHA-256 chain, Ed25519 signature).
    pub suite: String,
    /// First 8 bytes of the SHA-256 of the public key, hex.
    pub key_id: String,
}

/// A checkpoint with its signature, as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What is attested.
    pub checkpoint: Checkpoint,
    /// Ed25519 signature over the domain-separated encoding.
    pub signature: Vec<u8>,
}

impl Checkpoint {
    /// The bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = DOMAIN.to_vec();
        bytes.extend(postcard::to_allocvec(self).unwrap_or_default());
        bytes
    }
}

impl SignedCheckpoint {
    /// Whether the signature verifies with the raw 32-byte public key.
    pub fn verify(&self, public_key: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, public_key)
            .verify(&self.checkpoint.signed_bytes(), &self.signature)
            .is_ok()
    }

    /// Stored form.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// From the stored form.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        postcard::from_bytes(bytes).ok()
    }
}

/// The node's checkpoint signing key.
pub struct CheckpointSigner {
    key: Ed25519KeyPair,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("key_id", &self.key_id())
            .finish()
    }
}

impl CheckpointSigner {
    /// Loads `dir/audit-checkpoint.key`, creating a new key if there is none.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join("audit-checkpoint.key");
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| std::io::Error::other("cannot generate an Ed25519 key"))?;
                write_private(&path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(e),
        };
        let key = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not an Ed25519 PKCS#8 key", path.display()),
            )
        })?;
        Ok(Self { key })
    }

    /// The raw public key.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// The key id recorded in checkpoints.
    pub fn key_id(&self) -> String {
        key_id(self.public_key())
    }

    /// The public key as SPKI PEM.
    pub fn public_key_pem(&self) -> String {
        public_key_pem(self.public_key())
    }

    /// Signs a checkpoint of the head `(seq, hash)`.
    pub fn sign(&self, node: &str, seq: u64, head_hash: Hash, time_ms: i64) -> SignedCheckpoint {
        let checkpoint = Checkpoint {
            version: 1,
            node: node.to_owned(),
            seq,
            head_hash,
            time_ms,
            suite: SUITE_INTERNATIONAL.to_owned(),
            key_id: self.key_id(),
        };
        let signature = self.key.sign(&checkpoint.signed_bytes()).as_ref().to_vec();
        SignedCheckpoint {
            checkpoint,
            signature,
        }
    }
}

/// The key id of a raw public key.
pub fn key_id(public_key: &[u8]) -> String {
    hex(&super::event::sha256(public_key)[..8])
}

/// A raw Ed25519 public key as SPKI PEM.
pub fn public_key_pem(raw: &[u8]) -> String {
    let mut der = SPKI_ED25519_PREFIX.to_vec();
    der.extend_from_slice(raw);
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    format!("-----BEGIN PUBLIC KEY-----\n{b64}\n-----END PUBLIC KEY-----\n")
}

/// The raw key from an Ed25519 SPKI PEM.
pub fn public_key_from_pem(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .ok()?;
    let raw = der.strip_prefix(&SPKI_ED25519_PREFIX[..])?;
    (raw.len() == 32).then(|| raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_with_their_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::open(dir.path()).unwrap();
        let cp = signer.sign("node-1", 42, [9; 32], 1);
        assert!(cp.verify(signer.public_key()));
        let pem = signer.public_key_pem();
        assert_eq!(public_key_from_pem(&pem).unwrap(), signer.public_key());

        let mut forged = cp.clone();
        forged.checkpoint.seq = 43;
        assert!(!forged.verify(signer.public_key()));
        let other = CheckpointSigner::open(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(!cp.verify(other.public_key()));
        // The same key is loaded again from the data directory.
        assert_eq!(
            CheckpointSigner::open(dir.path()).unwrap().public_key(),
            signer.public_key()
        );
        assert_eq!(SignedCheckpoint::decode(&cp.encode()).unwrap(), cp);
    }
}
