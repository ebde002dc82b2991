//! Resident pseudonyms: a keyed HMAC-SHA256 of the ID number, cut to 16 bytes.
//!
//! The audit log alone does not say who was looked up; an officer who knows an
//! ID can still find every event about it, because the gateway derives the
//! same pseudonym from it. The key lives in the data directory
//! (`pseudonym.key`, mode 0600) and never leaves it.

use std::io::Write;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{aead, hmac};

use crate::domain::ResidentId;

/// The key's file in the data directory: the one key every node of a
/// cluster must share.
pub const KEY_FILE: &str = "pseudonym.key";

/// Derives pseudonyms with the data directory's key.
#[derive(Debug)]
pub struct Pseudonymizer {
    key: hmac::Key,
}

impl Pseudonymizer {
    /// Loads `dir/pseudonym.key`. A missing key is an error naming
    /// `tongban keys init`: a new key would cut every earlier disclosure off
    /// from its resident, so starting never makes one.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => Ok(Self::from_secret(&bytes)),
            Ok(_) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} is not a 32-byte key", path.display()),
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(crate::keys::missing(&path, crate::keys::Kind::Pseudonym))
            }
            Err(e) => Err(e),
        }
    }

    /// Makes `dir/pseudonym.key` if there is none, never replacing one;
    /// returns the file if it wrote it. Only `tongban keys init` (and the
    /// demo through it) calls this.
    pub fn make_missing(dir: &Path) -> std::io::Result<Option<std::path::PathBuf>> {
        let path = dir.join(KEY_FILE);
        if path.exists() {
            return Ok(None);
        }
        let mut secret = vec![0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| std::io::Error::other("no system randomness"))?;
        write_private(&path, &secret)?;
        Ok(Some(path))
    }

    /// A pseudonymizer over a given secret.
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A fingerprint of the key (an HMAC of a fixed text; says nothing about
    /// any resident): nodes of a cluster compare it, since they must share the key.
    pub fn fingerprint(&self) -> String {
        let tag = hmac::sign(&self.key, b"tongban pseudonym key fingerprint");
        crate::domain::hex(&tag.as_ref()[..8])
    }

    /// A keyed digest of `parts` under the label `domain` (each part
    /// length-prefixed, so no two lists of parts collide): a hash kept at
    /// rest that no one without the key can test a guessed resident ID
    /// against. Never equal to a pseudonym (those are of an ID alone).
    pub fn digest(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(b"tongban ");
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        for part in parts {
            ctx.update(&(part.len() as u64).to_be_bytes());
            ctx.update(part);
        }
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// `plain` sealed (AES-256-GCM, a key derived from this one under the
    /// label `domain`, a random nonce) and bound to `context` (the record
    /// it belongs to: moved to another record it does not open), as hex.
    /// Only a holder of the key opens it: what a store keeps of a resident
    /// ID it must give back to someone.
    pub fn seal(&self, domain: &str, context: &[u8], plain: &[u8]) -> Option<String> {
        let key = self.sealing_key(domain)?;
        let mut nonce = [0u8; aead::NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).ok()?;
        let mut sealed = plain.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(context),
            &mut sealed,
        )
        .ok()?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Some(crate::domain::hex(&out))
    }

    /// What [`Self::seal`] sealed under `domain` for `context`; none if it
    /// was altered, moved or sealed under another key.
    pub fn open_sealed(&self, domain: &str, context: &[u8], sealed: &str) -> Option<Vec<u8>> {
        let key = self.sealing_key(domain)?;
        let mut bytes = vec![0u8; sealed.len() / 2];
        if bytes.len() < aead::NONCE_LEN + aead::AES_256_GCM.tag_len()
            || !crate::domain::unhex(sealed, &mut bytes)
        {
            return None;
        }
        let (nonce, body) = bytes.split_at_mut(aead::NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let plain = key
            .open_in_place(nonce, aead::Aad::from(context), body)
            .ok()?;
        Some(plain.to_vec())
    }

    fn sealing_key(&self, domain: &str) -> Option<aead::LessSafeKey> {
        let secret = self.digest(domain, &[b"sealing key"]);
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &secret).ok()?;
        Some(aead::LessSafeKey::new(key))
    }

    /// The pseudonym of one resident.
    pub fn pseudonym(&self, id: &ResidentId) -> [u8; 16] {
        let tag = hmac::sign(&self.key, id.as_str().as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag.as_ref()[..16]);
        out
    }
}

/// Writes a file readable by its owner only, atomically (temporary file,
/// fsync, rename, fsync of the directory): a stop at any step leaves the old
/// file or the new one, never a part.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        crate::faults::point(dir, "key.write")?;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        crate::faults::point(dir, "key.sync")?;
        f.sync_all()?;
    }
    crate::faults::point(dir, "key.rename")?;
    std::fs::rename(&tmp, path)?;
    crate::faults::point(dir, "key.dir_sync")?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_id_gives_the_same_pseudonym_and_keys_differ() {
        let id = ResidentId::parse("11010519491231002X").unwrap();
        let a = Pseudonymizer::from_secret(b"k1");
        let b = Pseudonymizer::from_secret(b"k2");
        assert_eq!(a.pseudonym(&id), a.pseudonym(&id));
        assert_ne!(a.pseudonym(&id), b.pseudonym(&id));
    }

    #[test]
    fn sealed_text_opens_only_with_its_key_label_and_record() {
        let a = Pseudonymizer::from_secret(b"k1");
        let b = Pseudonymizer::from_secret(b"k2");
        let id = b"11010519491231002X";
        let sealed = a.seal("objection", b"DO-1", id).unwrap();
        assert!(!sealed.contains("3131303130"), "the ID is not there in hex");
        assert_ne!(
            sealed,
            a.seal("objection", b"DO-1", id).unwrap(),
            "a fresh nonce"
        );
        assert_eq!(a.open_sealed("objection", b"DO-1", &sealed).unwrap(), id);
        assert!(b.open_sealed("objection", b"DO-1", &sealed).is_none());
        assert!(a.open_sealed("other", b"DO-1", &sealed).is_none());
        assert!(a.open_sealed("objection", b"DO-2", &sealed).is_none());
        let mut bent = sealed.clone().into_bytes();
        bent[30] = if bent[30] == b'0' { b'1' } else { b'0' };
        let bent = String::from_utf8(bent).unwrap();
        assert!(a.open_sealed("objection", b"DO-1", &bent).is_none());
        assert!(a.open_sealed("objection", b"DO-1", "00").is_none());
        assert!(a.open_sealed("objection", b"DO-1", "zz").is_none());
    }
}
