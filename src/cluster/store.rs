//! The policy versions in PostgreSQL: the schema, reads, and the change
//! transaction.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::mpsc;
use tokio_postgres::types::Json;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::config::{ClusterConfig, redact_url};
use crate::policy::PolicySources;

/// Advisory lock keys (two ints would do; one bigint is simpler to read in `pg_locks`).
const LOCK_MIGRATE: i64 = 0x746f_6e67_6261_6e01;
const LOCK_POLICY: i64 = 0x746f_6e67_6261_6e02;

/// One version of the policy set, as the cluster's history lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct VersionRow {
    /// The version.
    pub version: i64,
    /// The hash of its files (the ETag base).
    pub content_hash: String,
    /// When it was committed, ms since the epoch (PostgreSQL's clock).
    pub committed_ms: i64,
    /// The node it was committed through.
    pub node_id: String,
    /// Who committed it.
    pub author: String,
    /// What kind of change.
    pub action: String,
    /// What it changed, in a line.
    pub summary: String,
    /// Why, as its author said.
    pub reason: Option<String>,
    /// The policy files it changed, added or removed.
    pub changed_files: Vec<String>,
}

/// A node as it last reported itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeRow {
    /// Its id.
    pub node_id: String,
    /// The address it serves on.
    pub listen: String,
    /// `tongban <version>`.
    pub software: String,
    /// When its process started, ms since the epoch.
    pub started_ms: i64,
    /// Its last heartbeat, ms since the epoch (PostgreSQL's clock).
    pub heartbeat_ms: i64,
    /// Seconds since then (PostgreSQL's clock, so nodes' clocks do not matter).
    pub seconds_since_heartbeat: f64,
    /// Whether it beat within three of its intervals.
    pub alive: bool,
    /// The policy version it enforces.
    pub policy_version: i64,
    /// Its audit chain's last durable event.
    pub audit_head: i64,
    /// How far that chain is in PostgreSQL.
    pub audit_shipped: i64,
}

/// What went wrong talking to PostgreSQL. Messages never hold the password.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// `[cluster]` cannot be used as written.
    #[error("[cluster]: {0}")]
    Config(String),
    /// PostgreSQL cannot be reached (or the pool timed out).
    #[error("PostgreSQL cannot be reached: {0}")]
    Unavailable(String),
    /// PostgreSQL answered, and refused the login: a wrong or missing
    /// password, or a role or database it does not know.
    #[error(
        "PostgreSQL refused the login: {0} (the password is read from the variable cluster.postgres_password_env names, or from postgres_url)"
    )]
    LoginRefused(String),
    /// PostgreSQL refused a statement.
    #[error("PostgreSQL: {0}")]
    Database(String),
    /// The set the change was prepared against is no longer the newest.
    #[error(
        "policy version {head} was committed while this change was prepared against version {base}"
    )]
    Conflict {
        /// The newest version.
        head: i64,
        /// The version the change started from.
        base: i64,
    },
    /// A stored version is not a policy set this gateway can read.
    #[error("policy version {version} in PostgreSQL cannot be read: {message}")]
    Corrupt {
        /// Which version.
        version: i64,
        /// Why.
        message: String,
    },
}

impl From<tokio_postgres::Error> for ClusterError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            // Class 28 (invalid authorization specification): the password,
            // or what pg_hba.conf allows; 3D000: no such database.
            Some(db) if db.code().code().starts_with("28") || db.code().code() == "3D000" => {
                Self::LoginRefused(format!("{} ({})", db.message(), db.code().code()))
            }
            Some(db) => Self::Database(format!("{} ({})", db.message(), db.code().code())),
            None if e.is_closed() => Self::Unavailable("the connection was closed".into()),
            None => {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(s) = source {
                    message = format!("{message}: {s}");
                    source = s.source();
                }
                // The server asked for a password and none is configured.
                if message.ends_with("password missing") {
                    return Self::LoginRefused(
                        "it asks for a password, and none is configured".into(),
                    );
                }
                Self::Unavailable(message)
            }
        }
    }
}

impl From<deadpool_postgres::PoolError> for ClusterError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// One stored version of the policy set.
#[derive(Debug, Clone)]
pub struct StoredVersion {
    /// 1, 2, 3…
    pub version: i64,
    /// The files.
    pub sources: PolicySources,
    /// When it was committed, ms since the epoch.
    pub committed_ms: i64,
    /// The node it was committed through (`push` for the command line).
    pub node_id: String,
    /// `dept/subject` of the administrator, or who pushed.
    pub author: String,
    /// `push`, `put`, `delete`, `revert`.
    pub action: String,
    /// One line on what changed.
    pub summary: String,
    /// Why, as its author said.
    pub reason: Option<String>,
}

/// One heartbeat of a node.
#[derive(Debug)]
pub struct Heartbeat<'a> {
    /// The node.
    pub node_id: &'a str,
    /// This process (random per start), to tell a restart from a second
    /// process with the same id.
    pub instance: &'a str,
    /// Where it serves.
    pub listen: &'a str,
    /// When the process started, ms since the epoch.
    pub started_ms: i64,
    /// Its heartbeat interval.
    pub every_secs: u64,
    /// The policy version it enforces.
    pub policy_version: i64,
    /// Its audit chain's last durable event.
    pub audit_head: u64,
    /// How far that chain is in PostgreSQL.
    pub audit_shipped: u64,
}

/// Who commits a change, and what it is.
#[derive(Debug, Clone)]
pub struct ChangeMeta {
    /// The node (or `cli`).
    pub node_id: String,
    /// `dept/subject`, or who pushed.
    pub author: String,
    /// `push`, `put`, `delete`, `revert`.
    pub action: String,
    /// One line on what changed.
    pub summary: String,
    /// Why, as its author said.
    pub reason: Option<String>,
}

#[derive(Clone)]
enum Tls {
    Plain,
    Rustls(MakeRustlsConnect),
}

/// The policy versions in PostgreSQL, through a small pool.
pub struct PolicyStore {
    pool: Pool,
    pg: tokio_postgres::Config,
    tls: Tls,
    /// The connection string without its password, for messages.
    pub url: String,
}

impl std::fmt::Debug for PolicyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl PolicyStore {
    /// A pool for `config` (connections are made when first needed).
    pub fn new(config: &ClusterConfig) -> Result<Self, ClusterError> {
        let url = redact_url(&config.postgres_url);
        let mut pg = tokio_postgres::Config::from_str(&config.postgres_url).map_err(|e| {
            ClusterError::Config(format!("postgres_url \"{url}\" cannot be read: {e}"))
        })?;
        if let Some(var) = &config.postgres_password_env {
            let password = std::env::var(var).map_err(|_| {
                ClusterError::Config(format!(
                    "postgres_password_env names {var}, which is not set"
                ))
            })?;
            pg.password(password);
        }
        pg.connect_timeout(Duration::from_millis(config.connect_timeout_ms.get()));
        pg.application_name(format!("tongban {}", config.node_id));
        pg.options(format!(
            "-c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            config.statement_timeout_ms,
            config.statement_timeout_ms.saturating_mul(4)
        ));
        let tls = match &config.postgres_ca {
            Some(ca) => Tls::Rustls(rustls_connector(ca)?),
            None => {
                if pg.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                    return Err(ClusterError::Config(
                        "postgres_url asks for sslmode=require, but postgres_ca (the CA of PostgreSQL's certificate) is not set".into(),
                    ));
                }
                pg.ssl_mode(tokio_postgres::config::SslMode::Disable);
                Tls::Plain
            }
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Custom(RECYCLE_CHECK.into()),
        };
        let manager = match &tls {
            Tls::Plain => Manager::from_config(pg.clone(), NoTls, manager_config),
            Tls::Rustls(t) => Manager::from_config(pg.clone(), t.clone(), manager_config),
        };
        let timeout = Some(Duration::from_millis(config.connect_timeout_ms.get()));
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.get())
            .runtime(Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Self { pool, pg, tls, url })
    }

    /// The pool (for the audit copy's statements).
    pub(super) fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Creates the tables if they are missing (quietly: PostgreSQL's notice
    /// that each one exists already is not asked for).
    pub async fn migrate(&self) -> Result<(), ClusterError> {
        let client = self.pool.get().await?;
        client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL client_min_messages = warning; \
                 SELECT pg_advisory_xact_lock({LOCK_MIGRATE}); {} {} {} {} {} COMMIT;",
                super::schema::POLICY_SCHEMA,
                super::schema::AUDIT_SCHEMA,
                super::schema::STOPS_SCHEMA,
                super::schema::IDEMPOTENCY_SCHEMA,
                super::schema::FLAGS_SCHEMA
            ))
            .await?;
        Ok(())
    }

    /// Records `value` under `key` if nothing is recorded yet, and returns
    /// what is recorded (the first node's value).
    pub async fn claim_meta(&self, key: &str, value: &str) -> Result<String, ClusterError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO tongban_cluster_meta (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&key, &value],
            )
            .await?;
        Ok(client
            .query_one(
                "SELECT value FROM tongban_cluster_meta WHERE key = $1",
                &[&key],
            )
            .await?
            .get(0))
    }

    /// The newest version number (0 when none is stored).
    pub async fn head_version(&self) -> Result<i64, ClusterError> {
        let client = self.pool.get().await?;
        head_of(&client).await
    }

    /// The newest version, if any.
    pub async fn head(&self) -> Result<Option<StoredVersion>, ClusterError> {
        let client = self.pool.get().await?;
        let v = head_of(&client).await?;
        if v == 0 {
            return Ok(None);
        }
        fetch(&client, v).await
    }

    /// One version, if stored.
    pub async fn get(&self, version: i64) -> Result<Option<StoredVersion>, ClusterError> {
        let client = self.pool.get().await?;
        fetch(&client, version).await
    }

    /// Registers this node's answer-signing public keys (JWKs, each named
    /// by its `kid`, which is derived from the key) and returns every
    /// node's: the cluster's JWK Set, so a proof signed by any node verifies
    /// with the set fetched from any node.
    pub async fn answer_keys(
        &self,
        node_id: &str,
        own: &[serde_json::Value],
    ) -> Result<Vec<serde_json::Value>, ClusterError> {
        let client = self.pool.get().await?;
        for jwk in own {
            let Some(kid) = jwk["kid"].as_str() else {
                continue;
            };
            client
                .execute(
                    "INSERT INTO tongban_answer_key (kid, node_id, jwk) VALUES ($1, $2, $3)
                     ON CONFLICT (kid) DO NOTHING",
                    &[&kid, &node_id, &Json(jwk)],
                )
                .await?;
        }
        let rows = client
            .query(
                "SELECT jwk FROM tongban_answer_key ORDER BY registered_at, kid",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.get::<_, Json<serde_json::Value>>(0).0)
            .collect())
    }

    /// The policy versions, newest first (at most `limit`), each with the
    /// files it changed against the version before it: the cluster's
    /// history of changes, whichever node made them.
    pub async fn versions(&self, limit: i64) -> Result<Vec<VersionRow>, ClusterError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT v.version, v.content_hash,
                        (extract(epoch FROM v.committed_at) * 1000)::bigint,
                        v.node_id, v.author, v.action, v.summary, v.reason,
                        coalesce((SELECT array_agg(k ORDER BY k) FROM (
                            SELECT e.key AS k FROM jsonb_each(v.files) e
                             WHERE p.files IS NULL OR p.files -> e.key IS DISTINCT FROM e.value
                            UNION
                            SELECT e.key FROM jsonb_each(p.files) e WHERE NOT v.files ? e.key
                        ) changed), '{}')
                   FROM tongban_policy_version v
                   LEFT JOIN tongban_policy_version p ON p.version = v.version - 1
                  ORDER BY v.version DESC LIMIT $1",
                &[&limit],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| VersionRow {
                version: r.get(0),
                content_hash: r.get(1),
                committed_ms: r.get(2),
                node_id: r.get(3),
                author: r.get(4),
                action: r.get(5),
                summary: r.get(6),
                reason: r.get(7),
                changed_files: r.get(8),
            })
            .collect())
    }

    /// Records this node's heartbeat (and the policy version it enforces).
    pub async fn heartbeat(&self, beat: &Heartbeat<'_>) -> Result<(), ClusterError> {
        let client = self.pool.get().await?;
        let every = i32::try_from(beat.every_secs).unwrap_or(i32::MAX);
        client
            .execute(
                "INSERT INTO tongban_node
                   (node_id, instance, listen, software, started_at, heartbeat_at, heartbeat_secs,
                    policy_version, audit_head, audit_shipped)
                 VALUES ($1, $2, $3, $4, to_timestamp($5::bigint / 1000.0), now(), $6, $7, $8, $9)
                 ON CONFLICT (node_id) DO UPDATE SET
                   instance = EXCLUDED.instance, listen = EXCLUDED.listen, software = EXCLUDED.software,
                   started_at = EXCLUDED.started_at, heartbeat_at = now(),
                   heartbeat_secs = EXCLUDED.heartbeat_secs, policy_version = EXCLUDED.policy_version,
                   audit_head = EXCLUDED.audit_head, audit_shipped = EXCLUDED.audit_shipped",
                &[
                    &beat.node_id,
                    &beat.instance,
                    &beat.listen,
                    &concat!("tongban ", env!("CARGO_PKG_VERSION")),
                    &beat.started_ms,
                    &every,
                    &beat.policy_version,
                    &i64::try_from(beat.audit_head).unwrap_or(i64::MAX),
                    &i64::try_from(beat.audit_shipped).unwrap_or(i64::MAX),
                ],
            )
            .await?;
        Ok(())
    }

    /// How many nodes beat within three of their intervals.
    pub async fn live_nodes(&self) -> Result<u32, ClusterError> {
        let client = self.pool.get().await?;
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM tongban_node
                  WHERE now() - heartbeat_at < make_interval(secs => heartbeat_secs * 3)",
                &[],
            )
            .await?
            .get(0);
        Ok(u32::try_from(n).unwrap_or(1).max(1))
    }

    /// Every node that ever registered, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, ClusterError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT node_id, listen, software,
                        (extract(epoch FROM started_at) * 1000)::bigint,
                        (extract(epoch FROM heartbeat_at) * 1000)::bigint,
                        extract(epoch FROM now() - heartbeat_at)::float8,
                        now() - heartbeat_at < make_interval(secs => heartbeat_secs * 3),
                        policy_version, audit_head, audit_shipped
                   FROM tongban_node ORDER BY node_id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| NodeRow {
                node_id: r.get(0),
                listen: r.get(1),
                software: r.get(2),
                started_ms: r.get(3),
                heartbeat_ms: r.get(4),
                seconds_since_heartbeat: r.get(5),
                alive: r.get(6),
                policy_version: r.get(7),
                audit_head: r.get(8),
                audit_shipped: r.get(9),
            })
            .collect())
    }

    /// Opens a change: takes the cluster-wide policy lock (held until commit
    /// or rollback) and reads the newest version.
    pub async fn begin_change(&self) -> Result<ChangeTx, ClusterError> {
        let client = self.pool.get().await?;
        client.batch_execute("BEGIN").await?;
        client
            .execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_POLICY])
            .await?;
        let head = head_of(&client).await?;
        Ok(ChangeTx {
            client: Some(client),
            head,
        })
    }

    /// A connection of its own that listens on `channel`: the payloads of its
    /// notifications arrive on the receiver, which ends when the connection
    /// does. Keep the client: dropping it closes the connection.
    pub async fn listen(
        &self,
        channel: &str,
    ) -> Result<(Client, mpsc::UnboundedReceiver<String>), ClusterError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let client = match &self.tls {
            Tls::Plain => {
                let (client, conn) = self.pg.connect(NoTls).await?;
                tokio::spawn(forward_notifications(conn, tx));
                client
            }
            Tls::Rustls(t) => {
                let (client, conn) = self.pg.connect(t.clone()).await?;
                tokio::spawn(forward_notifications(conn, tx));
                client
            }
        };
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        Ok((client, rx))
    }
}

/// Run on a pooled connection before it is handed out again. A connection
/// handed back inside a transaction (a request that failed or was dropped
/// half-way) must not be reused: inside a transaction `now()` is the
/// transaction's start and differs from `statement_timestamp()`, so this
/// divides by zero (or fails at once if the transaction is aborted), and
/// the pool closes the connection instead, which rolls the transaction
/// back. Outside a transaction the two are equal by definition and the
/// check is one quiet round trip, where a `ROLLBACK` would make PostgreSQL
/// warn "there is no transaction in progress" on every reuse.
pub const RECYCLE_CHECK: &str = "SELECT 1 / (now() = statement_timestamp())::int";

/// An open change: the policy lock is held until [`ChangeTx::commit`] or
/// [`ChangeTx::rollback`] (or is dropped, which rolls back).
pub struct ChangeTx {
    /// Taken when the transaction ends.
    client: Option<deadpool_postgres::Object>,
    head: i64,
}

/// A change given up without commit or rollback (its request failed before
/// its audit event was durable) is rolled back at once, so the cluster-wide
/// lock is not held until the connection is next taken from the pool.
impl Drop for ChangeTx {
    fn drop(&mut self) {
        if let (Some(client), Ok(rt)) = (self.client.take(), tokio::runtime::Handle::try_current())
        {
            rt.spawn(async move {
                let _ = client.batch_execute("ROLLBACK").await;
            });
        }
    }
}

impl std::fmt::Debug for ChangeTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeTx")
            .field("head", &self.head)
            .finish_non_exhaustive()
    }
}

impl ChangeTx {
    /// The newest version when the change was opened.
    pub fn head(&self) -> i64 {
        self.head
    }

    fn conn(&self) -> Result<&deadpool_postgres::Object, ClusterError> {
        self.client
            .as_ref()
            .ok_or_else(|| ClusterError::Database("the change has ended".into()))
    }

    /// The newest version's content.
    pub async fn head_version(&self) -> Result<Option<StoredVersion>, ClusterError> {
        if self.head == 0 {
            return Ok(None);
        }
        fetch(self.conn()?, self.head).await
    }

    /// Stores `sources` as the next version and notifies every node; returns
    /// the new version.
    pub async fn commit(
        mut self,
        sources: &PolicySources,
        meta: &ChangeMeta,
    ) -> Result<i64, ClusterError> {
        let version = self.head + 1;
        let client = self
            .client
            .take()
            .ok_or_else(|| ClusterError::Database("the change has ended".into()))?;
        let result = async {
            client
                .execute(
                    "INSERT INTO tongban_policy_version
                       (version, content_hash, files, node_id, author, action, summary, reason)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &version,
                        &sources.version(),
                        &Json(&sources.files),
                        &meta.node_id,
                        &meta.author,
                        &meta.action,
                        &meta.summary,
                        &meta.reason,
                    ],
                )
                .await?;
            client
                .execute(
                    "SELECT pg_notify($1, $2)",
                    &[&super::POLICY_CHANNEL, &version.to_string()],
                )
                .await?;
            client.batch_execute("COMMIT").await?;
            Ok(version)
        }
        .await;
        if result.is_err() {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        result
    }

    /// Gives the change up.
    pub async fn rollback(mut self) {
        if let Some(client) = self.client.take() {
            if let Err(e) = client.batch_execute("ROLLBACK").await {
                tracing::warn!(error = %ClusterError::from(e), "rolling back a policy change failed");
            }
        }
    }
}

async fn head_of(client: &Client) -> Result<i64, ClusterError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM tongban_policy_version",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

async fn fetch(client: &Client, version: i64) -> Result<Option<StoredVersion>, ClusterError> {
    let row = client
        .query_opt(
            "SELECT content_hash, files::text,
                    (extract(epoch FROM committed_at) * 1000)::bigint,
                    node_id, author, action, summary, reason
               FROM tongban_policy_version WHERE version = $1",
            &[&version],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let hash: String = row.get(0);
    let files: String = row.get(1);
    let files: BTreeMap<String, String> =
        serde_json::from_str(&files).map_err(|e| ClusterError::Corrupt {
            version,
            message: format!("files: {e}"),
        })?;
    if let Some(bad) = files.keys().find(|path| !is_policy_path(path)) {
        return Err(ClusterError::Corrupt {
            version,
            message: format!("{bad:?} is not the path of a policy file"),
        });
    }
    let sources = PolicySources { files };
    if sources.version() != hash {
        return Err(ClusterError::Corrupt {
            version,
            message: format!(
                "its files hash to {}, the row says {hash}",
                sources.version()
            ),
        });
    }
    Ok(Some(StoredVersion {
        version,
        sources,
        committed_ms: row.get(2),
        node_id: row.get(3),
        author: row.get(4),
        action: row.get(5),
        summary: row.get(6),
        reason: row.get(7),
    }))
}

/// `departments.toml`, `datasets/NAME.toml` or `grants/NAME.toml`, as a
/// policy directory is read: nothing that could name a file elsewhere.
pub fn is_policy_path(path: &str) -> bool {
    if path == "departments.toml" {
        return true;
    }
    let Some((dir, name)) = path.split_once('/') else {
        return false;
    };
    matches!(dir, "datasets" | "grants")
        && name.len() > ".toml".len()
        && name.ends_with(".toml")
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
}

async fn forward_notifications<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    tx: mpsc::UnboundedSender<String>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
            Some(Ok(AsyncMessage::Notification(n))) => {
                if tx.send(n.payload().to_owned()).is_err() {
                    return;
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %ClusterError::from(e), "policy notification connection lost");
                return;
            }
            None => return,
        }
    }
}

fn rustls_connector(ca: &std::path::Path) -> Result<MakeRustlsConnect, ClusterError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| ClusterError::Config(format!("postgres_ca {}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| ClusterError::Config(format!("postgres_ca {}: {e}", ca.display())))?;
    }
    if roots.is_empty() {
        return Err(ClusterError::Config(format!(
            "postgres_ca {} holds no certificate",
            ca.display()
        )));
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClusterError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::is_policy_path;

    #[test]
    fn only_policy_file_paths_are_accepted() {
        for ok in [
            "departments.toml",
            "datasets/gongan.hukou.toml",
            "grants/minzheng.toml",
        ] {
            assert!(is_policy_path(ok), "{ok}");
        }
        for bad in [
            "../departments.toml",
            "grants/../../etc/passwd.toml",
            "grants/.hidden.toml",
            "grants/a/b.toml",
            "grants/.toml",
            "other/x.toml",
            "/etc/x.toml",
            "grants/x.txt",
            "grants\\x.toml",
        ] {
            assert!(!is_policy_path(bad), "{bad}");
        }
    }
}
