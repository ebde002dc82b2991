//! The gateway's keys in its data directory, and the one place new ones are
//! made: `tongban keys init` (which `tongban demo` calls). Starting never
//! makes a key. A missing pseudonym key is an error because a new one would
//! cut every earlier disclosure off from its resident; a missing checkpoint
//! or answer-signing key is one because the gateway would otherwise sign
//! with a key nobody was given.
//!
//! Which keys the nodes of a cluster share is said here once ([`Kind::shared`]):
//! the pseudonym key. Every other key is a node's own.

use std::path::{Path, PathBuf};

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::pseudonym::Pseudonymizer;
use crate::audit::suite::Suite;

/// The kinds of key a gateway holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The resident pseudonym key (`pseudonym.key`).
    Pseudonym,
    /// A checkpoint key (`audit-checkpoint.key`, `audit-checkpoint-sm2.pem`).
    Checkpoint,
    /// The answer-signing keys (`answer-keys/`).
    Answer,
}

impl Kind {
    /// What the key is, for an operator.
    pub fn what(self) -> &'static str {
        match self {
            Self::Pseudonym => "the resident pseudonym key",
            Self::Checkpoint => "the audit checkpoint key",
            Self::Answer => "the answer-signing key",
        }
    }

    /// Whether every node of a cluster must hold the same one.
    pub fn shared(self) -> bool {
        self == Self::Pseudonym
    }

    /// Why a new key cannot simply replace a lost one.
    fn why_not_replaced(self) -> &'static str {
        match self {
            Self::Pseudonym => "a new key would cut every earlier disclosure off from its resident",
            Self::Checkpoint => "the checkpoints already signed are verified with the old key",
            Self::Answer => "the answers already signed name the old key",
        }
    }
}

/// The error for a key that is not there: what to run for a new gateway,
/// and what to do for one that has served.
pub fn missing(path: &Path, kind: Kind) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::NotFound,
        format!(
            "{} ({}) is missing. For a new gateway, `tongban keys init --home DIR` (or --config FILE) makes its keys{}; for one that has served, restore the file from its backup ({})",
            kind.what(),
            path.display(),
            if kind.shared() {
                ", and a node joining a cluster takes this one from a node of the cluster (copy it before running keys init)"
            } else {
                ""
            },
            kind.why_not_replaced()
        ),
    )
}

/// One key file after `init`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFile {
    /// Its kind.
    pub kind: Kind,
    /// The file (or, for the answer-signing keys, the directory).
    pub path: PathBuf,
    /// Whether `init` made it now (else it was there and was kept).
    pub made: bool,
}

/// Makes every key the gateway needs under `data_dir` that is not there yet,
/// never replacing one: the pseudonym key, the checkpoint key of each of
/// `suites` (the Ed25519 key always), the first answer-signing key. Returns
/// every key file, made or kept.
pub fn init(data_dir: &Path, suites: &[Suite]) -> std::io::Result<Vec<KeyFile>> {
    std::fs::create_dir_all(data_dir)?;
    let mut files = Vec::new();
    let made = Pseudonymizer::make_missing(data_dir)?.is_some();
    files.push(KeyFile {
        kind: Kind::Pseudonym,
        path: data_dir.join(crate::audit::pseudonym::KEY_FILE),
        made,
    });
    let mut made = Vec::new();
    for suite in suites {
        made.extend(CheckpointSigner::make_missing(data_dir, *suite)?);
    }
    for suite in [Suite::International, Suite::Gm] {
        let path = data_dir.join(match suite {
            Suite::International => crate::audit::checkpoint::ED25519_KEY_FILE,
            Suite::Gm => crate::audit::checkpoint::SM2_KEY_FILE,
        });
        if path.exists() {
            files.push(KeyFile {
                kind: Kind::Checkpoint,
                made: made.contains(&path),
                path,
            });
        }
    }
    let made = crate::proof::make_missing(data_dir)
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .is_some();
    files.push(KeyFile {
        kind: Kind::Answer,
        path: data_dir.join("answer-keys"),
        made,
    });
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_makes_what_is_missing_and_keeps_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        // A node joining a cluster: the shared key copied in first.
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("pseudonym.key"), [7u8; 32]).unwrap();
        let files = init(&data, &[Suite::International]).unwrap();
        let made: Vec<(Kind, bool)> = files.iter().map(|f| (f.kind, f.made)).collect();
        assert_eq!(
            made,
            [
                (Kind::Pseudonym, false),
                (Kind::Checkpoint, true),
                (Kind::Answer, true)
            ]
        );
        assert_eq!(
            std::fs::read(data.join("pseudonym.key")).unwrap(),
            [7u8; 32]
        );
        let checkpoint = std::fs::read(data.join("audit-checkpoint.key")).unwrap();
        // A second run makes nothing and changes nothing.
        let again = init(&data, &[Suite::International]).unwrap();
        assert!(again.iter().all(|f| !f.made), "{again:?}");
        assert_eq!(
            std::fs::read(data.join("audit-checkpoint.key")).unwrap(),
            checkpoint
        );
        // Everything the gateway loads at start is there.
        Pseudonymizer::open(&data).unwrap();
        CheckpointSigner::open(&data).unwrap();
        crate::proof::AnswerKeys::open(&data).unwrap();
        assert_eq!(
            files.iter().filter(|f| f.kind.shared()).count(),
            1,
            "only the pseudonym key is shared"
        );
    }

    #[test]
    fn a_missing_pseudonym_key_is_never_replaced_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let err = Pseudonymizer::open(dir.path()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        let said = err.to_string();
        assert!(said.contains("tongban keys init"), "{said}");
        assert!(said.contains("cut every earlier disclosure"), "{said}");
        assert!(!dir.path().join("pseudonym.key").exists());
    }
}
