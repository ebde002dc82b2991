//! `tongban token`: a development token from a home's issuer key.

use std::path::Path;

use anyhow::{Context, Result, bail};

use tongban::config::{Config, IssuerKind};

use super::duration_secs;

pub(crate) fn parse_ttl(s: &str) -> Result<i64> {
    // A bare number is seconds.
    let secs = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse::<i64>().unwrap_or(i64::MAX)
    } else {
        duration_secs(s).with_context(|| format!("--ttl {s}: expected e.g. 90s, 30m, 1h, 2d"))?
    };
    if secs <= 0 || secs > 30 * 86_400 {
        bail!("--ttl {s}: must be between 1 second and 30 days");
    }
    Ok(secs)
}

pub(crate) fn mint(
    home: &Path,
    dept: &str,
    sub: &str,
    roles: &[String],
    ttl: i64,
) -> Result<String> {
    let config = Config::load(&home.join("tongban.toml"))?;
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.kind == IssuerKind::Staff)
        .context("the home's configuration names no staff issuer")?;
    let key_path = home.join("keys/issuer.pem");
    let key =
        std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(tongban::dev::devpki::mint_token(
        &key,
        &issuer.issuer,
        &issuer.audience,
        dept,
        sub,
        roles,
        now,
        ttl,
    )?)
}

/// A resident's development token: from the home's resident issuer (signed
/// by the home's issuer key), carrying `id` in its `resident_id_claim`.
pub(crate) fn mint_resident(home: &Path, id: &str, ttl: i64) -> Result<String> {
    let id = tongban::domain::ResidentId::parse(id)
        .map_err(|e| anyhow::anyhow!("--resident {id}: {e}"))?;
    let config = Config::load(&home.join("tongban.toml"))?;
    let issuer = config
        .issuers
        .iter()
        .find(|i| i.kind == IssuerKind::Resident)
        .context(
            "the home's configuration names no resident issuer ([[issuer]] kind = \"resident\")",
        )?;
    let claim = issuer.resident_id_claim.as_deref().unwrap_or("sub");
    let key_path = home.join("keys/issuer.pem");
    let key =
        std::fs::read(&key_path).with_context(|| format!("cannot read {}", key_path.display()))?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    Ok(tongban::dev::devpki::mint_resident_token(
        &key,
        &issuer.issuer,
        &issuer.audience,
        claim,
        id.as_str(),
        now,
        ttl,
    )?)
}
