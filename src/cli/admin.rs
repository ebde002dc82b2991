//! `tongban admin …`: the emergency stops against a running gateway, over
//! its HTTPS API with an administrator's token: suspend and resume a
//! department, deny a token, list both.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::online::Connection;

#[derive(Subcommand)]
pub(crate) enum AdminCommand {
    /// List the departments and whether each is suspended.
    Departments {
        #[command(flatten)]
        conn: Connection,
    },
    /// Suspend a department: every request of its systems is refused
    /// (403 department-suspended) from the next one on, on open connections too.
    Suspend {
        #[command(flatten)]
        conn: Connection,
        /// The department id.
        dept: String,
        /// Why (kept in the audit log and shown to the department).
        #[arg(long)]
        reason: String,
    },
    /// Lift a department's suspension.
    Resume {
        #[command(flatten)]
        conn: Connection,
        /// The department id.
        dept: String,
    },
    /// Deny a token by its `jti`, or every token of a subject issued before a
    /// time (default: now), until the entry expires.
    RevokeToken {
        #[command(flatten)]
        conn: Connection,
        /// The token's `jti` claim.
        #[arg(long, conflicts_with_all = ["sub", "issued_before"], required_unless_present = "sub")]
        jti: Option<String>,
        /// The subject (`sub` claim) whose tokens to deny.
        #[arg(long)]
        sub: Option<String>,
        /// With --sub: deny tokens issued before this time (RFC 3339; default now).
        #[arg(long, requires = "sub")]
        issued_before: Option<String>,
        /// When the entry is dropped: RFC 3339, or a duration such as 12h or 7d (default 7d).
        #[arg(long)]
        expires: Option<String>,
        /// Why (kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List the token deny-list.
    RevokedTokens {
        #[command(flatten)]
        conn: Connection,
    },
}

pub(crate) fn run(command: AdminCommand) -> Result<ExitCode> {
    let (conn, method, path, body) = match command {
        AdminCommand::Departments { conn } => (conn, "GET", "/v1/admin/departments".into(), None),
        AdminCommand::Suspend { conn, dept, reason } => (
            conn,
            "POST",
            format!("/v1/admin/departments/{}/suspend", segment(&dept)?),
            Some(json!({ "reason": reason })),
        ),
        AdminCommand::Resume { conn, dept } => (
            conn,
            "POST",
            format!("/v1/admin/departments/{}/resume", segment(&dept)?),
            None,
        ),
        AdminCommand::RevokeToken {
            conn,
            jti,
            sub,
            issued_before,
            expires,
            reason,
        } => {
            let mut body = json!({ "reason": reason });
            let expires = expires.map(|e| absolute_time(&e)).transpose()?;
            for (key, value) in [
                ("jti", jti),
                ("sub", sub),
                ("issued_before", issued_before),
                ("expires", expires),
            ] {
                if let Some(v) = value {
                    body[key] = json!(v);
                }
            }
            (conn, "POST", "/v1/admin/revoked-tokens".into(), Some(body))
        }
        AdminCommand::RevokedTokens { conn } => {
            (conn, "GET", "/v1/admin/revoked-tokens".into(), None)
        }
    };
    let target = conn.resolve("policy_admin")?;
    let (status, answer) = super::online::call_blocking(&target, method, &path, body)?;
    if status.is_success() {
        out!("{}", serde_json::to_string_pretty(&answer)?);
        Ok(ExitCode::SUCCESS)
    } else {
        let title = answer["title"].as_str().unwrap_or("refused");
        let detail = answer["detail"].as_str().unwrap_or("");
        let kind = answer["type"].as_str().unwrap_or("");
        eprintln!("tongban: {status}: {title}. {detail} ({kind})");
        Ok(ExitCode::FAILURE)
    }
}

/// A time as the API takes it: RFC 3339 as given, or a duration from now
/// (`90m`, `12h`, `7d`).
fn absolute_time(text: &str) -> Result<String> {
    let Some(seconds) = super::duration_secs(text) else {
        // Not a duration: an RFC 3339 time or a date, for the gateway to check.
        return Ok(text.to_owned());
    };
    if !(1..=366 * 86_400).contains(&seconds) {
        bail!("{text}: a duration between 1s and 366d");
    }
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
    Ok(at.format(&time::format_description::well_known::Rfc3339)?)
}

/// A department id as one path segment: nothing that could change the path.
fn segment(dept: &str) -> Result<&str> {
    if dept.is_empty()
        || !dept
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        bail!("\"{dept}\" is not a department id (lowercase letters, digits and _)");
    }
    Ok(dept)
}
