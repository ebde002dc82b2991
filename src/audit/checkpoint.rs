//! Signed checkpoints: every N events or T seconds, the node signs the
//! sequence number and hash of the head of its chain, with Ed25519 (suite
//! `international`) or SM2 (suite `gm`). Anyone with the public keys can then
//! check that an exported or stored log is the one the gateway wrote, up to
//! each checkpoint, without trusting the gateway.
//!
//! The signed bytes are `b"tongban-checkpoint-v2\0"` followed by the postcard
//! encoding of [`Checkpoint`] (version 1 checkpoints, from before suites
//! could change, keep their `v1` domain and layout). A change of suite ends
//! an epoch: the checkpoint of the last event before it names the new suite
//! and key and the previous ones, and both keys sign it. The keys are
//! `data_dir/audit-checkpoint.key` (Ed25519, PKCS#8 DER) and
//! `data_dir/audit-checkpoint-sm2.pem` (SM2, PKCS#8 PEM), mode 0600;
//! `tongban audit pubkey` prints the public halves.

use std::path::Path;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::Ed25519KeyPair;
use serde::{Deserialize, Serialize};

use super::event::Hash;
use super::pseudonym::write_private;
use super::suite::{PublicKey, SigningKey, Suite};

/// The name of the default suite (SHA-256 chain, Ed25519 checkpoints).
pub const SUITE_INTERNATIONAL: &str = "international";
const DOMAIN_V1: &[u8] = b"tongban-checkpoint-v1\0";
const DOMAIN_V2: &[u8] = b"tongban-checkpoint-v2\0";
/// The checkpoint encoding written now.
pub const CHECKPOINT_VERSION: u8 = 2;

/// The key of the epoch before, on a checkpoint that changes suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousKey {
    /// The suite of the epoch that ends here.
    pub suite: String,
    /// Its checkpoint key's id.
    pub key_id: String,
}

/// What a checkpoint attests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Encoding version (1: before suites could change; 2: now).
    pub version: u8,
    /// The node whose chain this is.
    pub node: String,
    /// The sequence number of the head event.
    pub seq: u64,
    /// The head event's hash.
    pub head_hash: Hash,
    /// When it was signed, ms since the epoch.
    pub time_ms: i64,
    /// `international` or `gm`: the suite of the key that signs it, and of
    /// the events from here on.
    pub suite: String,
    /// First 8 bytes of the SHA-256 of the public key, hex.
    pub key_id: String,
    /// On the checkpoint that starts a new epoch (a change of suite): the
    /// key of the epoch that ends, which signs it too. Version 2 only.
    pub previous: Option<PreviousKey>,
}

/// Version 1's layout (no `previous`), for reading and verifying old checkpoints.
#[derive(Serialize, Deserialize)]
struct CheckpointV1 {
    version: u8,
    node: String,
    seq: u64,
    head_hash: Hash,
    time_ms: i64,
    suite: String,
    key_id: String,
}

#[derive(Serialize, Deserialize)]
struct SignedCheckpointV1 {
    checkpoint: CheckpointV1,
    signature: Vec<u8>,
}

/// A checkpoint with its signature(s), as stored and exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What is attested.
    pub checkpoint: Checkpoint,
    /// The signature of the key named by `key_id` over the domain-separated
    /// encoding (Ed25519: 64 bytes; SM2: DER).
    pub signature: Vec<u8>,
    /// With `previous`: the previous epoch's key's signature over the same bytes.
    pub previous_signature: Option<Vec<u8>>,
}

impl Checkpoint {
    /// What `key` attests of the head `(seq, head_hash)` of `node`'s chain:
    /// its suite and key id, no previous key.
    fn of(key: &SigningKey, node: &str, seq: u64, head_hash: Hash, time_ms: i64) -> Self {
        Self {
            version: CHECKPOINT_VERSION,
            node: node.to_owned(),
            seq,
            head_hash,
            time_ms,
            suite: key.suite().name().to_owned(),
            key_id: key.public_key().key_id(),
            previous: None,
        }
    }

    fn v1(&self) -> CheckpointV1 {
        CheckpointV1 {
            version: self.version,
            node: self.node.clone(),
            seq: self.seq,
            head_hash: self.head_hash,
            time_ms: self.time_ms,
            suite: self.suite.clone(),
            key_id: self.key_id.clone(),
        }
    }

    /// The bytes that are signed.
    pub fn signed_bytes(&self) -> Vec<u8> {
        if self.version == 1 {
            let mut bytes = DOMAIN_V1.to_vec();
            bytes.extend(postcard::to_allocvec(&self.v1()).unwrap_or_default());
            return bytes;
        }
        let mut bytes = DOMAIN_V2.to_vec();
        bytes.extend(postcard::to_allocvec(self).unwrap_or_default());
        bytes
    }

    /// The suite it names, if known.
    pub fn suite(&self) -> Option<Suite> {
        Suite::parse(&self.suite)
    }
}

/// Why a signed checkpoint does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Signed by a key not given.
    #[error(
        "the checkpoint at {at} is signed by key {key}, which is not among the public keys given"
    )]
    UnknownKey {
        /// The checkpoint's sequence number.
        at: u64,
        /// The key id.
        key: String,
    },
    /// The key is of another suite than the checkpoint names.
    #[error("the checkpoint at {at} names suite {suite} but key {key} is a {key_suite} key")]
    WrongSuite {
        /// The checkpoint's sequence number.
        at: u64,
        /// The suite it names.
        suite: String,
        /// The key id.
        key: String,
        /// The key's suite.
        key_suite: String,
    },
    /// The signature does not verify.
    #[error(
        "the checkpoint at {at} has a signature that does not verify with the public key {key}"
    )]
    BadSignature {
        /// The checkpoint's sequence number.
        at: u64,
        /// The key id.
        key: String,
    },
    /// A change of suite from a key not given.
    #[error(
        "the checkpoint at {at} changes suite from key {key}, which is not among the public keys given"
    )]
    UnknownPreviousKey {
        /// The checkpoint's sequence number.
        at: u64,
        /// The previous key's id.
        key: String,
    },
    /// A change of suite the previous key did not sign.
    #[error("the checkpoint at {at} changes suite but the previous key {key} did not sign it")]
    NotHandedOver {
        /// The checkpoint's sequence number.
        at: u64,
        /// The previous key's id.
        key: String,
    },
    /// A change of suite with one signature of the two.
    #[error("the checkpoint at {at} changes suite without both signatures")]
    HalfSigned {
        /// The checkpoint's sequence number.
        at: u64,
    },
}

impl SignedCheckpoint {
    /// Checks the signature (and, on a change of suite, the previous key's)
    /// with the keys of `keys`; says what is wrong otherwise.
    pub fn check(&self, keys: &Keyring) -> Result<(), CheckpointError> {
        let c = &self.checkpoint;
        let at = c.seq;
        let bytes = c.signed_bytes();
        let key = keys
            .find(&c.key_id)
            .ok_or_else(|| CheckpointError::UnknownKey {
                at,
                key: c.key_id.clone(),
            })?;
        if key.suite.name() != c.suite {
            return Err(CheckpointError::WrongSuite {
                at,
                suite: c.suite.clone(),
                key: c.key_id.clone(),
                key_suite: key.suite.to_string(),
            });
        }
        if !key.verify(&bytes, &self.signature) {
            return Err(CheckpointError::BadSignature {
                at,
                key: c.key_id.clone(),
            });
        }
        match (&c.previous, &self.previous_signature) {
            (None, None) => Ok(()),
            (Some(prev), Some(sig)) => {
                let old =
                    keys.find(&prev.key_id)
                        .ok_or_else(|| CheckpointError::UnknownPreviousKey {
                            at,
                            key: prev.key_id.clone(),
                        })?;
                if old.suite.name() != prev.suite || !old.verify(&bytes, sig) {
                    return Err(CheckpointError::NotHandedOver {
                        at,
                        key: prev.key_id.clone(),
                    });
                }
                Ok(())
            }
            _ => Err(CheckpointError::HalfSigned { at }),
        }
    }

    /// Stored form.
    pub fn encode(&self) -> Vec<u8> {
        if self.checkpoint.version == 1 {
            return postcard::to_allocvec(&SignedCheckpointV1 {
                checkpoint: self.checkpoint.v1(),
                signature: self.signature.clone(),
            })
            .unwrap_or_default();
        }
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// From the stored form (either version: the first byte says which).
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes.first() {
            Some(1) => {
                let v1: SignedCheckpointV1 = postcard::from_bytes(bytes).ok()?;
                let c = v1.checkpoint;
                Some(Self {
                    checkpoint: Checkpoint {
                        version: c.version,
                        node: c.node,
                        seq: c.seq,
                        head_hash: c.head_hash,
                        time_ms: c.time_ms,
                        suite: c.suite,
                        key_id: c.key_id,
                        previous: None,
                    },
                    signature: v1.signature,
                    previous_signature: None,
                })
            }
            _ => postcard::from_bytes(bytes).ok(),
        }
    }
}

/// Public keys that verify checkpoints, found by key id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keyring {
    keys: Vec<PublicKey>,
}

impl Keyring {
    /// From keys.
    pub fn new(keys: Vec<PublicKey>) -> Self {
        Self { keys }
    }

    /// Every Ed25519 and SM2 key of a PEM text.
    pub fn from_pem(text: &str) -> Self {
        Self::new(PublicKey::all_from_pem(text))
    }

    /// The key with this id.
    pub fn find(&self, key_id: &str) -> Option<&PublicKey> {
        self.keys.iter().find(|k| k.key_id() == key_id)
    }

    /// Every key.
    pub fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds the keys of another ring.
    pub fn extend(&mut self, other: Keyring) {
        for k in other.keys {
            if !self.keys.contains(&k) {
                self.keys.push(k);
            }
        }
    }

    /// Every key as SPKI PEM, one block after another.
    pub fn to_pem(&self) -> String {
        self.keys.iter().map(PublicKey::to_pem).collect()
    }
}

/// The node's checkpoint signing keys: Ed25519 always (the default suite,
/// and every log's first epoch before a change), SM2 when the `gm` suite is
/// or was in use; one of them is active.
#[derive(Debug)]
pub struct CheckpointSigner {
    ed25519: SigningKey,
    sm2: Option<SigningKey>,
    active: Suite,
    /// The public halves of keys rotated out (`tongban audit rotate-key`):
    /// the checkpoints they signed still verify.
    retired: Vec<PublicKey>,
}

/// Where the Ed25519 key lives (PKCS#8 DER, mode 0600).
pub const ED25519_KEY_FILE: &str = "audit-checkpoint.key";
/// Where the SM2 key lives (PKCS#8 PEM, mode 0600).
pub const SM2_KEY_FILE: &str = "audit-checkpoint-sm2.pem";
/// Where keys rotated out are kept (`<key id>.key`, `<key id>-sm2.pem`):
/// their public halves verify the checkpoints they signed.
pub const RETIRED_DIR: &str = "audit-checkpoint-retired";

impl CheckpointSigner {
    /// Loads the keys under `dir` with the default suite active.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        Self::open_suite(dir, Suite::International)
    }

    /// Loads the keys under `dir` with `suite` active. A missing key is an
    /// error naming `tongban keys init` (or `tongban audit keygen --suite gm`
    /// for a suite being taken up): starting never makes a key.
    pub fn open_suite(dir: &Path, suite: Suite) -> std::io::Result<Self> {
        let path = dir.join(ED25519_KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(crate::keys::missing(&path, crate::keys::Kind::Checkpoint));
            }
            Err(e) => return Err(e),
        };
        let ed25519 = Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not an Ed25519 PKCS#8 key", path.display()),
            )
        })?;
        let sm2_path = dir.join(SM2_KEY_FILE);
        let sm2 = if sm2_path.exists() {
            Some(SigningKey::sm2_from_pem(&sm2_path)?)
        } else if suite == Suite::Gm {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "audit.suite is gm, but there is no SM2 checkpoint key at {}: `tongban audit keygen --suite gm` makes one",
                    sm2_path.display()
                ),
            ));
        } else {
            None
        };
        Ok(Self {
            ed25519: SigningKey::Ed25519(ed25519),
            sm2,
            active: suite,
            retired: retired_keys(dir)?,
        })
    }

    /// Begins a rotation of `suite`'s key under `dir`: a new key is written
    /// beside the active one, and the active one is kept among the retired
    /// keys. Nothing changes for the gateway until [`Rotation::finish`]; a
    /// stop in between leaves the old key active (and the new one beside it,
    /// replaced by the next rotation).
    pub fn begin_rotation(dir: &Path, suite: Suite) -> std::io::Result<Rotation> {
        let signer = Self::open_suite(dir, suite)?;
        let active_path = dir.join(match suite {
            Suite::International => ED25519_KEY_FILE,
            Suite::Gm => SM2_KEY_FILE,
        });
        let new_path = active_path.with_extension("new");
        let new = match suite {
            Suite::International => SigningKey::Ed25519(generate_ed25519(&new_path)?),
            Suite::Gm => SigningKey::sm2_generate(&new_path)?,
        };
        let old = signer.key(suite).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no {suite} key"))
        })?;
        let retired = dir.join(RETIRED_DIR);
        std::fs::create_dir_all(&retired)?;
        let kept = retired.join(match suite {
            Suite::International => format!("{}.key", old.public_key().key_id()),
            Suite::Gm => format!("{}-sm2.pem", old.public_key().key_id()),
        });
        write_private(&kept, &std::fs::read(&active_path)?)?;
        Ok(Rotation {
            signer,
            new,
            new_path,
            active_path,
        })
    }

    /// Makes the checkpoint key of `suite` under `dir` if there is none (the
    /// Ed25519 key always: every log's first epoch is signed with it), never
    /// replacing one; returns the files it wrote. Only `tongban keys init`,
    /// `tongban audit keygen` and `tongban demo` call it.
    pub fn make_missing(dir: &Path, suite: Suite) -> std::io::Result<Vec<std::path::PathBuf>> {
        let mut made = Vec::new();
        let path = dir.join(ED25519_KEY_FILE);
        if !path.exists() {
            generate_ed25519(&path)?;
            made.push(path);
        }
        let sm2_path = dir.join(SM2_KEY_FILE);
        if suite == Suite::Gm && !sm2_path.exists() {
            SigningKey::sm2_generate(&sm2_path)?;
            made.push(sm2_path);
        }
        Ok(made)
    }

    /// Makes the missing keys of `suite` under `dir`, then loads them (tests
    /// and tools that start from an empty directory).
    pub fn make_and_open(dir: &Path, suite: Suite) -> std::io::Result<Self> {
        Self::make_missing(dir, suite)?;
        Self::open_suite(dir, suite)
    }

    /// The suite that signs new checkpoints.
    pub fn suite(&self) -> Suite {
        self.active
    }

    /// The key of `suite`, if this node has one.
    pub fn key(&self, suite: Suite) -> Option<&SigningKey> {
        match suite {
            Suite::International => Some(&self.ed25519),
            Suite::Gm => self.sm2.as_ref(),
        }
    }

    fn active_key(&self) -> &SigningKey {
        self.key(self.active).unwrap_or(&self.ed25519)
    }

    /// The active key's id (recorded in checkpoints and export headers).
    pub fn key_id(&self) -> String {
        self.active_key().public_key().key_id()
    }

    /// The public keys of every suite this node has keys for, and of the
    /// keys it rotated out.
    pub fn keyring(&self) -> Keyring {
        let mut keys = vec![self.ed25519.public_key()];
        if let Some(k) = &self.sm2 {
            keys.push(k.public_key());
        }
        for k in &self.retired {
            if keys.iter().all(|have| have.key_id() != k.key_id()) {
                keys.push(k.clone());
            }
        }
        Keyring::new(keys)
    }

    /// The public keys as SPKI PEM (one block per suite).
    pub fn public_key_pem(&self) -> String {
        self.keyring().to_pem()
    }

    /// Signs a checkpoint of the head `(seq, hash)` with the active key.
    pub fn sign(&self, node: &str, seq: u64, head_hash: Hash, time_ms: i64) -> SignedCheckpoint {
        let key = self.active_key();
        let checkpoint = Checkpoint::of(key, node, seq, head_hash, time_ms);
        let signature = key.sign(&checkpoint.signed_bytes());
        SignedCheckpoint {
            checkpoint,
            signature,
            previous_signature: None,
        }
    }

    /// Signs the checkpoint that ends an epoch of suite `from` at the head
    /// `(seq, hash)` and starts one of the active suite: signed by both keys.
    pub fn sign_handover(
        &self,
        from: Suite,
        node: &str,
        seq: u64,
        head_hash: Hash,
        time_ms: i64,
    ) -> std::io::Result<SignedCheckpoint> {
        let old = self.key(from).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "the log's current epoch is {from}, but this node has no {from} checkpoint key to hand over with"
                ),
            )
        })?;
        Ok(handed_over(
            self.active_key(),
            old,
            node,
            seq,
            head_hash,
            time_ms,
        ))
    }
}

/// A checkpoint key rotation under way ([`CheckpointSigner::begin_rotation`]).
#[derive(Debug)]
pub struct Rotation {
    signer: CheckpointSigner,
    new: SigningKey,
    new_path: std::path::PathBuf,
    active_path: std::path::PathBuf,
}

impl Rotation {
    /// The key rotated out.
    pub fn old_key_id(&self) -> String {
        self.signer.key_id()
    }

    /// The key rotated in.
    pub fn new_key_id(&self) -> String {
        self.new.public_key().key_id()
    }

    /// The checkpoint that hands the chain over at its head `(seq, hash)`:
    /// it names the new key and the old one, and both sign it, as at a
    /// change of suite.
    pub fn handover(
        &self,
        node: &str,
        seq: u64,
        head_hash: Hash,
        time_ms: i64,
    ) -> SignedCheckpoint {
        handed_over(
            &self.new,
            self.signer.active_key(),
            node,
            seq,
            head_hash,
            time_ms,
        )
    }

    /// Makes the new key the active one (an atomic rename, then a sync of
    /// the directory).
    pub fn finish(self) -> std::io::Result<()> {
        std::fs::rename(&self.new_path, &self.active_path)?;
        if let Some(dir) = self.active_path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// A new Ed25519 key, written to `path` (PKCS#8, mode 0600).
fn generate_ed25519(path: &Path) -> std::io::Result<Ed25519KeyPair> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| std::io::Error::other("cannot generate an Ed25519 key"))?;
    write_private(path, doc.as_ref())?;
    Ed25519KeyPair::from_pkcs8(doc.as_ref())
        .map_err(|_| std::io::Error::other("cannot read the key just generated"))
}

/// The checkpoint of the head `(seq, head_hash)` that hands the chain over
/// from `old` to `new` (a change of suite, or a rotation of the key): it
/// names both keys and both sign it.
fn handed_over(
    new: &SigningKey,
    old: &SigningKey,
    node: &str,
    seq: u64,
    head_hash: Hash,
    time_ms: i64,
) -> SignedCheckpoint {
    let mut checkpoint = Checkpoint::of(new, node, seq, head_hash, time_ms);
    checkpoint.previous = Some(PreviousKey {
        suite: old.suite().name().to_owned(),
        key_id: old.public_key().key_id(),
    });
    let bytes = checkpoint.signed_bytes();
    SignedCheckpoint {
        signature: new.sign(&bytes),
        previous_signature: Some(old.sign(&bytes)),
        checkpoint,
    }
}

/// The public halves of the keys under `dir`'s retired directory.
fn retired_keys(dir: &Path) -> std::io::Result<Vec<PublicKey>> {
    let retired = dir.join(RETIRED_DIR);
    let entries = match std::fs::read_dir(&retired) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut keys = Vec::new();
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("-sm2.pem") {
            keys.push(SigningKey::sm2_from_pem(&path)?.public_key());
        } else if name.ends_with(".key") {
            let pair = Ed25519KeyPair::from_pkcs8(&std::fs::read(&path)?).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is not an Ed25519 PKCS#8 key", path.display()),
                )
            })?;
            keys.push(SigningKey::Ed25519(pair).public_key());
        }
    }
    keys.sort_by_key(PublicKey::key_id);
    Ok(keys)
}

/// The key id of a raw public key.
pub fn key_id(public_key: &[u8]) -> String {
    crate::domain::hex(&super::event::sha256(public_key)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_verify_with_their_key_only() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::make_and_open(dir.path(), Suite::International).unwrap();
        let cp = signer.sign("node-1", 42, [9; 32], 1);
        assert!(cp.check(&signer.keyring()).is_ok());
        let pem = signer.public_key_pem();
        assert_eq!(Keyring::from_pem(&pem), signer.keyring());

        let mut forged = cp.clone();
        forged.checkpoint.seq = 43;
        assert!(forged.check(&signer.keyring()).is_err());
        let other = CheckpointSigner::make_and_open(
            tempfile::tempdir().unwrap().path(),
            Suite::International,
        )
        .unwrap();
        assert!(cp.check(&other.keyring()).is_err());
        // The same key is loaded again from the data directory.
        assert_eq!(
            CheckpointSigner::open(dir.path()).unwrap().keyring(),
            signer.keyring()
        );
        assert_eq!(SignedCheckpoint::decode(&cp.encode()).unwrap(), cp);
    }

    #[test]
    fn starting_never_makes_a_key_and_making_never_replaces_one() {
        let dir = tempfile::tempdir().unwrap();
        let err = CheckpointSigner::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("tongban keys init"), "{err}");
        assert!(!dir.path().join(ED25519_KEY_FILE).exists());
        let made = CheckpointSigner::make_missing(dir.path(), Suite::International).unwrap();
        assert_eq!(made, vec![dir.path().join(ED25519_KEY_FILE)]);
        let first = CheckpointSigner::open(dir.path()).unwrap().keyring();
        // gm is taken up with its own key, and only then.
        let err = CheckpointSigner::open_suite(dir.path(), Suite::Gm).unwrap_err();
        assert!(err.to_string().contains("audit keygen --suite gm"), "{err}");
        let made = CheckpointSigner::make_missing(dir.path(), Suite::Gm).unwrap();
        assert_eq!(made, vec![dir.path().join(SM2_KEY_FILE)]);
        assert!(
            CheckpointSigner::make_missing(dir.path(), Suite::Gm)
                .unwrap()
                .is_empty()
        );
        let after = CheckpointSigner::open(dir.path()).unwrap().keyring();
        assert_eq!(after.keys()[0], first.keys()[0]);
    }

    #[test]
    fn version_1_checkpoints_still_decode_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let signer = CheckpointSigner::make_and_open(dir.path(), Suite::International).unwrap();
        let mut cp = signer.sign("node-1", 7, [3; 32], 1);
        cp.checkpoint.version = 1;
        let SigningKey::Ed25519(key) = signer.key(Suite::International).unwrap() else {
            unreachable!()
        };
        cp.signature = key.sign(&cp.checkpoint.signed_bytes()).as_ref().to_vec();
        let stored = cp.encode();
        let back = SignedCheckpoint::decode(&stored).unwrap();
        assert_eq!(back, cp);
        assert!(back.check(&signer.keyring()).is_ok());
    }

    #[test]
    fn a_handover_needs_both_keys() {
        let dir = tempfile::tempdir().unwrap();
        let gm = CheckpointSigner::make_and_open(dir.path(), Suite::Gm).unwrap();
        let cp = gm
            .sign_handover(Suite::International, "n", 5, [1; 32], 2)
            .unwrap();
        assert_eq!(cp.checkpoint.suite, "gm");
        assert!(cp.check(&gm.keyring()).is_ok());
        // Without the old key's public half, or with its signature gone, it fails.
        let only_sm2 = Keyring::new(vec![gm.key(Suite::Gm).unwrap().public_key()]);
        assert!(cp.check(&only_sm2).is_err());
        let mut stripped = cp.clone();
        stripped.previous_signature = None;
        assert!(stripped.check(&gm.keyring()).is_err());
        let mut swapped = cp.clone();
        swapped.previous_signature = Some(cp.signature.clone());
        assert!(swapped.check(&gm.keyring()).is_err());
    }
}
