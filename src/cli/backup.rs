//! `tongban backup` (the client of `GET /v1/admin/backup`) and `tongban
//! restore` (a new home from a backup file).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use super::online::{Connection, block_on, refused, transfer};

/// `backup --out FILE`: the gateway's backup, written beside FILE, checked
/// against its manifest, then renamed into place.
pub(crate) fn backup(conn: Connection, keys: bool, out: &Path) -> Result<ExitCode> {
    let target = conn.resolve("policy_admin")?;
    let part = out.with_extension("part");
    let path = format!("/v1/admin/backup?keys={keys}");
    let (status, bytes) = block_on(transfer(&target, "GET", &path, None, Some(&part)))?;
    if !status.is_success() {
        let problem: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
        return Err(refused(status, &problem));
    }
    let manifest = match tongban::backup::check(&part) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&part);
            return Err(e).context("the backup received does not check");
        }
    };
    std::fs::rename(&part, out).with_context(|| format!("cannot write {}", out.display()))?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    out!(
        "{}",
        serde_json::to_string_pretty(&serde_json::json!({
            "file": out,
            "node_id": manifest.node_id,
            "snapshot": manifest.snapshot,
            "keys": manifest.keys,
            "datasets": manifest.datasets,
            "entries": manifest.entries.len(),
        }))?
    );
    eprintln!(
        "backup of {} through audit event {} written to {}{}",
        target.url(),
        manifest.snapshot.seq,
        out.display(),
        if keys {
            " (with the keys: keep it as safe as they are)"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}

/// `restore --from FILE --home DIR`.
pub(crate) fn restore(from: &Path, home: &Path) -> Result<ExitCode> {
    let restored = tongban::backup::restore(from, home)
        .with_context(|| format!("cannot restore {}", from.display()))?;
    out!("{}", serde_json::to_string_pretty(&restored)?);
    eprintln!(
        "restored {} events (through {}) into {}; the chain verifies{}",
        restored.events,
        restored.head_seq,
        home.display(),
        if restored.signatures_verified {
            ", and every checkpoint signature"
        } else {
            " (checkpoint signatures not checked: the backup holds no keys)"
        }
    );
    for m in &restored.missing {
        eprintln!("still needed: {m}");
    }
    Ok(ExitCode::SUCCESS)
}
