//! `tongban demo`: a working gateway home in one step. Writes, where missing,
//! a configuration, a development PKI, a token issuer key, the sample policies
//! and deterministic sample data (also as JSON Lines under `samples/`). A
//! second run on the same home reuses what is there.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::dev::devpki;
use crate::dev::sample;
use crate::domain::DatasetId;
use crate::policy::load::load_dir;
use crate::provider::EmbeddedStore;

/// The demo issuer's `iss`.
pub const DEMO_ISSUER: &str = "tongban-demo-issuer";
/// The demo audience.
pub const DEMO_AUDIENCE: &str = "tongban";
/// The demo's resident identity provider (its tokens carry `id_number`).
pub const DEMO_RESIDENT_ISSUER: &str = "tongban-demo-residents";

/// The sample policy files, embedded so the binary alone can set up a home.
pub const SAMPLE_POLICIES: &[(&str, &str)] = &[
    (
        "departments.toml",
        include_str!("../../policies/departments.toml"),
    ),
    (
        "datasets/gongan.hukou.toml",
        include_str!("../../policies/datasets/gongan.hukou.toml"),
    ),
    (
        "datasets/renshe.shebao.toml",
        include_str!("../../policies/datasets/renshe.shebao.toml"),
    ),
    (
        "datasets/minzheng.hunyin.toml",
        include_str!("../../policies/datasets/minzheng.hunyin.toml"),
    ),
    (
        "datasets/minzheng.dibao.toml",
        include_str!("../../policies/datasets/minzheng.dibao.toml"),
    ),
    (
        "datasets/ziranziyuan.budongchan.toml",
        include_str!("../../policies/datasets/ziranziyuan.budongchan.toml"),
    ),
    (
        "datasets/weijian.bingli.toml",
        include_str!("../../policies/datasets/weijian.bingli.toml"),
    ),
    (
        "datasets/renshe.zhiye_zige.toml",
        include_str!("../../policies/datasets/renshe.zhiye_zige.toml"),
    ),
    (
        "grants/minzheng-dibao.toml",
        include_str!("../../policies/grants/minzheng-dibao.toml"),
    ),
    (
        "grants/renshe-pension.toml",
        include_str!("../../policies/grants/renshe-pension.toml"),
    ),
    (
        "grants/renshe-survivor.toml",
        include_str!("../../policies/grants/renshe-survivor.toml"),
    ),
    (
        "grants/yibao-enroll.toml",
        include_str!("../../policies/grants/yibao-enroll.toml"),
    ),
    (
        "grants/jiaoyu-admission.toml",
        include_str!("../../policies/grants/jiaoyu-admission.toml"),
    ),
    (
        "grants/jiaoyu-teacher.toml",
        include_str!("../../policies/grants/jiaoyu-teacher.toml"),
    ),
];

/// Departments that get a demo client certificate.
pub const DEMO_DEPARTMENTS: &[&str] = &[
    "gongan",
    "minzheng",
    "renshe",
    "weijian",
    "yibao",
    "ziranziyuan",
    "jiaoyu",
    "shujuju",
];

/// How to set up a demo home.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The address written into a new `tongban.toml`.
    pub listen: std::net::SocketAddr,
    /// How many sample residents to generate.
    pub residents: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 8443)),
            residents: 3000,
        }
    }
}

/// The demo home could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A file could not be written.
    #[error("{path}: {reason}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: std::io::Error,
    },
    /// The PKI could not be written.
    #[error("{0}")]
    Pki(#[from] devpki::DevPkiError),
    /// The written configuration does not load.
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    /// The policies in the home are not valid.
    #[error("policies: {0}")]
    Policy(String),
    /// The sample data could not be stored.
    #[error("sample data: {0}")]
    Store(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |reason| DemoError::Io {
        path: path.to_owned(),
        reason,
    }
}

/// The name of the client certificate the gateway presents to upstreams.
pub const GATEWAY_CLIENT: &str = "tongban-gateway";

/// The configuration file a demo home starts with.
pub fn demo_config_text(listen: std::net::SocketAddr) -> String {
    format!(
        r#"# tongban configuration written by `tongban demo`: for development only.
# Every key is described in docs/operating.md ("Configuration reference").
node_id = "demo-1"
listen = "{listen}"
data_dir = "data"
policies_dir = "policies"

[tls]
cert = "certs/server.pem"
key = "certs/server-key.pem"
client_auth = "optional"
client_ca = "certs/ca.pem"
# Revoke a client certificate with `tongban cert revoke --home <this home> --dept D`;
# the gateway reloads the list within a second.
client_crls = ["certs/ca.crl"]

[[issuer]]
issuer = "{DEMO_ISSUER}"
audience = "{DEMO_AUDIENCE}"
algorithms = ["ES256"]
public_key = "keys/issuer.pub.pem"
# The departments and staff roles this issuer may vouch for (the demo's one
# issuer serves every department, the operator's staff too).
departments = ["gongan", "minzheng", "renshe", "weijian", "yibao", "ziranziyuan", "jiaoyu", "shujuju"]
roles = ["privacy_officer", "policy_admin", "data_steward", "data_authority"]

# Residents sign in through the province's 一网通办 login, whose tokens carry
# the ID number: they read only their own record (/v1/me/…, the console's
# 我的数据 page). `tongban token --home <this home> --resident <ID>` mints one.
[[issuer]]
issuer = "{DEMO_RESIDENT_ISSUER}"
kind = "resident"
audience = "{DEMO_AUDIENCE}"
algorithms = ["ES256"]
public_key = "keys/issuer.pub.pem"
resident_id_claim = "id_number"
max_token_lifetime_secs = 3600

[rate_limit]
per_department = "6000/min"

# Working days: 2026's statutory holidays and make-up working days (调休).
[calendar]
file = "calendar.toml"

# Anomaly flags: thresholds, and the check that counts them in
# tongban_anomaly_flags every interval. Add webhook_url and webhook_ca to
# have each new flag posted.
[alerts]
rules = "anomaly.toml"

[audit]
durability = "fdatasync"
# "gm": SM3 hash chain and SM2-signed checkpoints (国密, for 密评); the SM2 key
# is data/audit-checkpoint-sm2.pem. Changing it later starts a new epoch.
suite = "international"

# Calling departments' own APIs (a dataset whose catalog entry says
# provider = {{ kind = "http", base_url = "https://…" }}). Try it with
# `tongban provider serve --home <this home> …` (see docs/integrating.md).
[upstream]
ca = "certs/ca.pem"
client_cert = "certs/clients/{GATEWAY_CLIENT}.pem"
client_key = "certs/clients/{GATEWAY_CLIENT}-key.pem"
"#
    )
}

/// Writes whatever is missing under `home` and returns its configuration
/// and its key files (made or kept, as `tongban keys init` reports them).
pub fn prepare_home(
    home: &Path,
    options: &DemoOptions,
) -> Result<(Config, Vec<crate::keys::KeyFile>), DemoError> {
    std::fs::create_dir_all(home).map_err(io_err(home))?;
    let config_path = home.join("tongban.toml");
    if !config_path.exists() {
        let text = demo_config_text(options.listen);
        std::fs::write(&config_path, text).map_err(io_err(&config_path))?;
    }
    for (name, text) in [
        ("calendar.toml", include_str!("../../deploy/calendar.toml")),
        ("anomaly.toml", include_str!("../../deploy/anomaly.toml")),
    ] {
        let path = home.join(name);
        if !path.exists() {
            std::fs::write(&path, text).map_err(io_err(&path))?;
        }
    }
    let mut identities = DEMO_DEPARTMENTS.to_vec();
    identities.push(GATEWAY_CLIENT);
    devpki::ensure(home, &identities)?;

    let policies = home.join("policies");
    if !policies.join("departments.toml").exists() {
        for (rel, text) in SAMPLE_POLICIES {
            let path = policies.join(rel);
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(io_err(dir))?;
            }
            std::fs::write(&path, text).map_err(io_err(&path))?;
        }
    }
    let config = Config::load(&config_path)?;

    let samples = home.join("samples");
    if !samples.join("gongan.hukou.jsonl").exists() {
        let set = load_dir(&config.policies_dir).map_err(|errs| {
            DemoError::Policy(
                errs.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let data = sample::generate(options.residents, sample::DEMO_SEED);
        std::fs::create_dir_all(&config.data_dir).map_err(io_err(&config.data_dir))?;
        let db = crate::datadir::open_path(&config.data_dir)
            .map_err(|e| DemoError::Store(e.to_string()))?;
        let store = EmbeddedStore::new(db).map_err(|e| DemoError::Store(e.to_string()))?;
        std::fs::create_dir_all(&samples).map_err(io_err(&samples))?;
        for (dataset, records) in &data.datasets {
            let Ok(id) = DatasetId::parse(dataset) else {
                continue;
            };
            if !set.datasets.contains_key(&id) {
                continue;
            }
            store
                .insert_all(&id, records)
                .map_err(|e| DemoError::Store(e.to_string()))?;
            let path = samples.join(format!("{dataset}.jsonl"));
            let mut out =
                std::io::BufWriter::new(std::fs::File::create(&path).map_err(io_err(&path))?);
            for (rid, record) in records {
                let mut line = serde_json::Map::new();
                line.insert("id_number".into(), rid.as_str().into());
                line.extend(record.iter().map(|(k, v)| (k.clone(), v.clone())));
                serde_json::to_writer(&mut out, &line)
                    .map_err(|e| DemoError::Store(e.to_string()))?;
                out.write_all(b"\n").map_err(io_err(&path))?;
            }
            out.flush().map_err(io_err(&path))?;
        }
    }
    // Every key, through `tongban keys init`'s own code: the checkpoint keys
    // of both audit suites, so that `audit.suite = "gm"` is one line away.
    let keys = crate::keys::init(
        &config.data_dir,
        &[
            crate::audit::suite::Suite::International,
            crate::audit::suite::Suite::Gm,
        ],
    )
    .map_err(io_err(&config.data_dir))?;
    Ok((config, keys))
}
