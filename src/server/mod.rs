//! The TLS accept loop and its shutdown.
//!
//! Each connection: TCP accept → TLS handshake (bounded in time) → the
//! verified client certificate's fingerprint and the peer address are attached
//! to every request on the connection → HTTP/1.1 or HTTP/2 (ALPN) served by
//! the axum router. On shutdown: stop accepting, let open connections finish
//! their requests up to a deadline, then flush and stop the audit writer.

pub mod client_trust;
mod connection;
pub mod pem;
mod phases;
pub mod proxy_protocol;
pub mod tls;
mod tracked;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::gateway::Gateway;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// The server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// TLS configuration.
    #[error("{0}")]
    Tls(#[from] tls::TlsError),
    /// A listener could not be bound.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Counts an open connection, and holds its place under the connection
/// limit, for as long as it lives.
pub(super) struct OpenConnection {
    gw: Arc<Gateway>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gw.metrics.connections_open.dec();
    }
}

/// Serves HTTPS on `listener` until `shutdown` completes, then drains and
/// stops the audit writer.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let tls_state = Arc::new(tls::TlsState::load(
        &gw.config.tls,
        Some(client_trust::TrustMetrics::of(&gw.metrics)),
    )?);
    log_crls(&tls_state.crls(), "start");
    let cert_reloader = spawn_tls_reloader(tls_state.clone(), gw.metrics.clone());
    let summaries = spawn_housekeeping(gw.clone());
    let metrics_server = spawn_metrics_server(&gw).await?;
    let connections = Arc::new(tokio::sync::Semaphore::new(
        gw.config.limits.max_connections.max(1),
    ));
    let shared = Arc::new(connection::Shared::new(&gw, tls_state));
    let registry = Arc::new(phases::Registry::default());
    let graceful = GracefulShutdown::new();
    let heartbeat = gw.cluster.is_some().then(|| {
        let listen = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        (
            spawn_cluster_heartbeat(gw.clone(), listen),
            spawn_audit_shipper(gw.clone()),
        )
    });
    log_cluster_start(&gw).await;
    let reloader = if gw.cluster.is_some() {
        spawn_cluster_follower(gw.clone())
    } else {
        spawn_policy_reloader(gw.clone())
    };
    let reloaders = spawn_reloaders(&gw);
    tokio::pin!(shutdown);

    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(permit) = take_slot(&connections, &registry).await else {
            gw.metrics.connections_refused.inc();
            drop(tcp);
            continue;
        };
        gw.metrics.connections_open.inc();
        let open = OpenConnection {
            gw: gw.clone(),
            _permit: permit,
        };
        let activity = Arc::new(phases::Activity::new());
        let (registered, close) = registry.register(activity.clone());
        let _ = tcp.set_nodelay(true);
        let accepted = connection::Accepted {
            open,
            registered,
            close,
            activity,
            tls: shared.tls_state.current(),
            watcher: graceful.watcher(),
        };
        tokio::spawn(connection::serve(shared.clone(), accepted, tcp, peer));
    }

    drop(listener);
    reloader.abort();
    for r in reloaders {
        r.abort();
    }
    cert_reloader.abort();
    summaries.abort();
    if let Some((beat, shipper)) = heartbeat {
        beat.abort();
        shipper.abort();
    }
    if let Some(m) = metrics_server {
        m.abort();
    }
    tracing::info!("shutting down: draining open connections");
    if tokio::time::timeout(DRAIN_DEADLINE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain deadline; closing them");
    }
    gw.write_unauthenticated_summaries().await;
    gw.shutdown().await;
    ship_before_exit(&gw).await;
    tracing::info!("audit log flushed; stopped");
    Ok(())
}

/// Ships the next batch of what the store holds (the applier files durable
/// events behind the writer) to the central copy: how many it shipped.
async fn ship_next(
    gw: &Gateway,
    cluster: &crate::cluster::Cluster,
    keys: &str,
) -> Result<u64, crate::cluster::ClusterError> {
    cluster
        .store
        .ship_audit(
            &cluster.node_id,
            &gw.audit_store,
            gw.audit.applied_seq(),
            keys,
            &cluster.shipping,
            SHIP_BATCH,
        )
        .await
}

/// In cluster mode, after the audit writer has signed its shutdown
/// checkpoint: ships what PostgreSQL does not hold yet (the last events and
/// that checkpoint), so that the central copy is signed through this node's
/// last event, within `cluster.shutdown_ship_secs`. What is left is logged;
/// the next start ships it.
async fn ship_before_exit(gw: &Gateway) {
    let (Some(cluster), Some(cc)) = (&gw.cluster, &gw.config.cluster) else {
        return;
    };
    if cc.shutdown_ship_secs == 0 {
        return;
    }
    let keys = gw.checkpoint_signer.keyring().to_pem();
    let ship = async {
        loop {
            match ship_next(gw, cluster, &keys).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let outcome = tokio::time::timeout(Duration::from_secs(cc.shutdown_ship_secs), ship).await;
    let through = cluster
        .shipping
        .shipped
        .load(std::sync::atomic::Ordering::Acquire);
    match outcome {
        Ok(Ok(())) => tracing::info!(
            shipped = through,
            "the central audit copy holds this node's last events and its shutdown checkpoint"
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, shipped = through, "the last audit events were not copied to PostgreSQL before the stop; they are shipped at the next start");
        }
        Err(_) => tracing::warn!(
            shipped = through,
            secs = cc.shutdown_ship_secs,
            "cluster.shutdown_ship_secs passed before the last audit events were copied to PostgreSQL; they are shipped at the next start"
        ),
    }
}

/// In cluster mode, one line at start: the node, the policy version it
/// enforces, and whether PostgreSQL and Redis answer.
async fn log_cluster_start(gw: &Gateway) {
    let Some(cluster) = &gw.cluster else {
        return;
    };
    cluster.compare_policy_files(&gw.config.policies_dir);
    let postgresql = match cluster.store.head_version().await {
        Ok(head) => format!("reachable (newest version {head})"),
        Err(e) => format!("not reachable ({e})"),
    };
    let redis = match cluster.limits.ping().await {
        None => "not configured (each node enforces its share of each limit)".to_owned(),
        Some(Ok(())) => "reachable".to_owned(),
        Some(Err(e)) => format!("not reachable ({e}); this node enforces its share of each limit"),
    };
    tracing::info!(
        node = %cluster.node_id,
        policy_version = cluster.applied(),
        postgresql = %postgresql,
        redis = %redis,
        "cluster node started"
    );
}

/// A place under the connection limit. At the limit, the connection idle
/// the longest makes room (an idle one holds a slot it does not use); with
/// every connection busy, none (the new one is closed at once rather than
/// queued).
async fn take_slot(
    connections: &Arc<tokio::sync::Semaphore>,
    registry: &phases::Registry,
) -> Option<tokio::sync::OwnedSemaphorePermit> {
    match connections.clone().try_acquire_owned() {
        Ok(permit) => Some(permit),
        Err(_) if registry.close_oldest_idle() => tokio::time::timeout(
            Duration::from_millis(500),
            connections.clone().acquire_owned(),
        )
        .await
        .ok()
        .and_then(Result::ok),
        Err(_) => None,
    }
}

/// Every minute, the summaries of refusals before authentication past
/// their limit; every hour, the removal of idempotency keys past their
/// 24 hours.
fn spawn_housekeeping(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.tick().await;
        for minute in 1u64.. {
            every.tick().await;
            gw.write_unauthenticated_summaries().await;
            gw.resident_limit.forget_quiet();
            if minute % 60 == 0 {
                match gw.idempotency.purge(gw.clock.unix_millis()).await {
                    Ok(n) if n > 0 => {
                        tracing::info!(removed = n, "idempotency keys past 24 hours removed");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "idempotency keys could not be purged"),
                }
            }
        }
    })
}

/// `/metrics` over plain HTTP on `metrics_listen`, if configured.
async fn spawn_metrics_server(
    gw: &Arc<Gateway>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ServeError> {
    let Some(addr) = gw.config.metrics_listen else {
        return Ok(None);
    };
    let l = TcpListener::bind(addr).await?;
    tracing::info!(addr = %addr, "serving /metrics over plain HTTP");
    let router = crate::api::ops::metrics_router(gw.clone());
    Ok(Some(tokio::spawn(async move {
        let _ = axum::serve(l, router).await;
    })))
}

/// How often watched files (policies, certificate) are checked for changes.
const POLICY_POLL: Duration = Duration::from_millis(500);

/// Reloads the policy directory when its files change (checked every half
/// second by size and modification time, so it works on every file system
/// and for every deployment tool) or on SIGHUP.
pub fn spawn_policy_reloader(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let dir = gw.config.policies_dir.clone();
        // No stamp at first: the first tick compares the files with the set in
        // force, so an edit made while the gateway was starting is not missed.
        let mut triggers = Triggers::new(None);
        loop {
            let trigger = triggers.next(|| fingerprint(&dir)).await;
            // Errors are logged and kept in the reload status; the set in force stays.
            let _ = gw.reload_policy_files(trigger).await;
        }
    })
}

/// In cluster mode: applies each policy version committed in PostgreSQL.
/// A connection of its own listens for the notification every commit sends
/// (so a change is in force within a second on every node); every
/// `cluster.policy_check_secs` the versions are compared anyway, so a
/// notification lost with a connection cannot leave the node behind. When
/// the listening connection drops it is made again with backoff (up to 10 s),
/// and the first thing after reconnecting is a check.
pub fn spawn_cluster_follower(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(cluster) = gw.cluster.clone() else {
            return;
        };
        let mut backoff = Duration::from_millis(200);
        loop {
            let (client, mut notes) = match cluster
                .store
                .listen(crate::cluster::POLICY_CHANNEL)
                .await
            {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, retry_ms = backoff.as_millis() as u64, "cannot listen for policy changes; the policy in force stays");
                    // Still compare versions: the pool may reach PostgreSQL when this connection did not.
                    sync_cluster(&gw, "check").await;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            };
            backoff = Duration::from_millis(200);
            sync_cluster(&gw, "listening").await;
            let mut check = tokio::time::interval(cluster.check_every);
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            check.tick().await;
            loop {
                let trigger = tokio::select! {
                    note = notes.recv() => match note {
                        Some(_) => "notification",
                        None => break,
                    },
                    _ = check.tick() => "check",
                };
                sync_cluster(&gw, trigger).await;
            }
            drop(client);
            tracing::warn!("the connection listening for policy changes closed; reconnecting");
        }
    })
}

/// Applies the cluster's newest policy version and its stops (suspensions,
/// revoked tokens), and shares this node's kept stops; failures are logged
/// (the policy sync logs its own), the periodic check retries.
async fn sync_cluster(gw: &Gateway, trigger: &str) {
    let _ = gw.sync_cluster_policy(trigger).await;
    if let Err(e) = gw.sync_cluster_stops().await {
        tracing::warn!(error = %e, "the cluster's suspensions and revoked tokens cannot be synchronized now; retrying");
    }
}

/// In cluster mode: reports this node in `tongban_node` every
/// `cluster.heartbeat_secs` (its address and the policy version it
/// enforces), which `GET /v1/admin/cluster` lists. A failed beat is logged
/// once until one succeeds again.
pub fn spawn_cluster_heartbeat(gw: Arc<Gateway>, listen: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(cluster) = gw.cluster.clone() else {
            return;
        };
        let mut random = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut random);
        let instance = crate::domain::hex(&random);
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut tick = tokio::time::interval(cluster.heartbeat_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tick.tick().await;
            let beat = crate::cluster::Heartbeat {
                node_id: &cluster.node_id,
                instance: &instance,
                listen: &listen,
                started_ms,
                every_secs: cluster.heartbeat_every.as_secs(),
                policy_version: cluster.applied(),
                audit_head: gw.audit.durable_seq(),
                audit_shipped: cluster
                    .shipping
                    .shipped
                    .load(std::sync::atomic::Ordering::Acquire),
            };
            let result = cluster.store.heartbeat(&beat).await;
            if result.is_ok() {
                if let Err(e) = gw.sync_answer_keys().await {
                    tracing::debug!(error = %e, "the cluster's answer-signing keys were not read");
                }
                if let Ok(live) = cluster.store.live_nodes().await {
                    cluster.limits.set_share(live);
                    gw.metrics.cluster_limit_share.set(i64::from(live));
                }
            }
            match result {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("cluster heartbeat recorded again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "cluster heartbeat not recorded; this node serves on");
                }
                Err(_) => {}
            }
        }
    })
}

/// Most events in one shipping transaction.
const SHIP_BATCH: u64 = 1000;
/// How often the shipper looks for new filed events when it has caught up.
const SHIP_EVERY: Duration = Duration::from_millis(200);

/// In cluster mode: copies this node's audit events (those the applier has
/// filed, with everything before them) into
/// PostgreSQL (`cluster::audit`), in order, `SHIP_BATCH` at a time, and
/// again every `SHIP_EVERY` once caught up. While PostgreSQL is away it
/// retries with backoff (up to 5 s); nothing is held in memory meanwhile:
/// the local chain is the queue, and the shipper resumes from the last
/// batch PostgreSQL committed.
pub fn spawn_audit_shipper(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(cluster) = gw.cluster.clone() else {
            return;
        };
        let keys = gw.checkpoint_signer.keyring().to_pem();
        let mut backoff = SHIP_EVERY;
        loop {
            let result = ship_next(&gw, &cluster, &keys).await;
            let shipped = cluster
                .shipping
                .shipped
                .load(std::sync::atomic::Ordering::Acquire);
            gw.metrics
                .cluster_audit_shipped
                .set(i64::try_from(shipped).unwrap_or(i64::MAX));
            gw.metrics.cluster_audit_lag.set(
                i64::try_from(gw.audit.durable_seq().saturating_sub(shipped)).unwrap_or(i64::MAX),
            );
            let pause = {
                let mut last_error = cluster
                    .shipping
                    .last_error
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match result {
                    Ok(n) => {
                        if last_error.take().is_some() {
                            tracing::info!(shipped, "audit events are copied to PostgreSQL again");
                        }
                        cluster
                            .shipping
                            .failing
                            .store(false, std::sync::atomic::Ordering::Release);
                        backoff = SHIP_EVERY;
                        (n < SHIP_BATCH).then_some(SHIP_EVERY)
                    }
                    Err(e) => {
                        let message = e.to_string();
                        if last_error.as_deref() != Some(message.as_str()) {
                            tracing::warn!(error = %message, shipped, "audit events not copied to PostgreSQL; the local log keeps them and shipping retries");
                        }
                        *last_error = Some(message);
                        cluster
                            .shipping
                            .failing
                            .store(true, std::sync::atomic::Ordering::Release);
                        gw.metrics.cluster_audit_ship_failures.inc();
                        let pause = backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        Some(pause)
                    }
                }
            };
            if let Some(pause) = pause {
                tokio::time::sleep(pause).await;
            }
        }
    })
}

/// Reloads the server certificate and key, and the client CAs and CRLs, when
/// their files change or on SIGHUP. New handshakes get the new ones; open
/// connections keep theirs. Files that do not load (half-written, mismatched,
/// a CRL not signed by a client CA or out of date) are logged and the ones in
/// use stay; the next change tries again. Once a minute, a CRL in force that
/// has passed its next update is reported.
pub fn spawn_tls_reloader(
    tls: Arc<tls::TlsState>,
    metrics: Arc<crate::metrics::Metrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let paths = tls.watched();
        let mut triggers = Triggers::new(Some(stamps(&paths)));
        let mut stale_check = tokio::time::interval(Duration::from_secs(60));
        loop {
            let trigger = tokio::select! {
                trigger = triggers.next(|| stamps(&paths)) => trigger,
                _ = stale_check.tick() => {
                    report_stale_crls(&tls);
                    continue;
                }
            };
            match tls.certificate().reload() {
                Ok(()) => tracing::info!(trigger, "server certificate reloaded"),
                Err(e) => {
                    tracing::error!(trigger, error = %e, "server certificate not reloaded; the one in use stays");
                }
            }
            match tls.reload_trust() {
                Ok(None) => {}
                Ok(Some(crls)) => {
                    log_crls(&crls, trigger);
                    tracing::info!(trigger, "client CAs and CRLs reloaded");
                }
                Err(e) => {
                    metrics.crl_reload_failures.inc();
                    tracing::error!(trigger, error = %e, "client CAs and CRLs not reloaded; the ones in force stay");
                }
            }
        }
    })
}

/// Logs the CRLs put in force.
fn log_crls(crls: &[client_trust::CrlSummary], trigger: &str) {
    for crl in crls {
        tracing::info!(
            trigger,
            file = %crl.path.display(),
            issuer = %crl.issuer,
            number = crl.number.as_deref().unwrap_or(""),
            revoked = crl.revoked,
            "client certificate CRL in force"
        );
    }
}

/// Logs every CRL in force that is past its next update.
fn report_stale_crls(tls: &tls::TlsState) {
    let now = i64::try_from(tls::now_secs()).unwrap_or(i64::MAX);
    let refused = tls.stale_policy() == Some(crate::config::StaleCrl::Refuse);
    for crl in tls.crls().iter() {
        if crl.next_update.is_some_and(|t| t <= now) {
            if refused {
                tracing::error!(
                    file = %crl.path.display(),
                    issuer = %crl.issuer,
                    "CRL is past its next update: the client certificates it covers are refused until a fresh one is loaded"
                );
            } else {
                tracing::warn!(
                    file = %crl.path.display(),
                    issuer = %crl.issuer,
                    "CRL is past its next update and still in use (tls.stale_crl = \"accept\")"
                );
            }
        }
    }
}

/// Size and modification time of a file.
type FileStamp = (std::path::PathBuf, u64, Option<std::time::SystemTime>);

/// What makes a reload happen: a change of the watched files (checked every
/// half second by size and modification time, so it works on every file
/// system and for every deployment tool), or SIGHUP.
struct Triggers {
    tick: tokio::time::Interval,
    hup: Hangup,
    last: Option<Vec<FileStamp>>,
}

impl Triggers {
    fn new(last: Option<Vec<FileStamp>>) -> Self {
        Self {
            tick: tokio::time::interval(POLICY_POLL),
            hup: Hangup::new(),
            last,
        }
    }

    /// Waits for the next change of `stamp()` or the next SIGHUP.
    async fn next(&mut self, stamp: impl Fn() -> Vec<FileStamp>) -> &'static str {
        loop {
            tokio::select! {
                _ = self.tick.tick() => {
                    let now = stamp();
                    if self.last.as_ref() != Some(&now) {
                        self.last = Some(now);
                        return "file change";
                    }
                }
                () = self.hup.next() => return "SIGHUP",
            }
        }
    }
}

fn stamps(paths: &[std::path::PathBuf]) -> Vec<FileStamp> {
    paths
        .iter()
        .filter_map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| (p.clone(), m.len(), m.modified().ok()))
        })
        .collect()
}

/// In cluster mode, on SIGHUP (which on a single node reloads the policy
/// files): compares this node's policy files with the version it enforces
/// and says so if they differ, since in cluster mode they take no effect.
fn spawn_policy_file_comparer(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(cluster) = gw.cluster.clone() else {
            return;
        };
        let mut hup = Hangup::new();
        loop {
            hup.next().await;
            let (cluster, dir) = (cluster.clone(), gw.config.policies_dir.clone());
            let _ = tokio::task::spawn_blocking(move || cluster.compare_policy_files(&dir)).await;
        }
    })
}

/// What reads files (and fetches key sets) again while the gateway serves,
/// each on its files' change and on SIGHUP: in cluster mode the policy-file
/// comparison; the issuers' keys; the answer-signing key; the department
/// rate limits.
fn spawn_reloaders(gw: &Arc<Gateway>) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = vec![
        spawn_policy_file_comparer(gw.clone()),
        spawn_answer_key_reloader(gw.clone()),
        spawn_rate_limit_reloader(gw.clone()),
        spawn_upstream_tls_reloader(gw.clone()),
        spawn_flag_rules_reloader(gw.clone()),
        spawn_flag_check(gw.clone()),
    ];
    tasks.extend(spawn_key_refreshers(gw));
    tasks.extend(
        gw.alerts
            .webhook
            .as_ref()
            .and_then(|hook| hook.spawn(gw.metrics.clone())),
    );
    tasks
}

/// Keeps each issuer's published key set fresh: fetched at once, then
/// every `jwks_refresh_secs` (a file: when it changes) and on SIGHUP.
fn spawn_key_refreshers(gw: &Arc<Gateway>) -> Vec<tokio::task::JoinHandle<()>> {
    gw.auth
        .key_sets()
        .iter()
        .map(|source| {
            let source = source.clone();
            let labels = crate::metrics::IssuerLabels {
                issuer: source.issuer().to_owned(),
            };
            let fetched = gw.metrics.token_keys_fetched.get_or_create(&labels).clone();
            let failures = gw
                .metrics
                .token_keys_fetch_failures
                .get_or_create(&labels)
                .clone();
            tokio::spawn(async move {
                let mut triggers = Triggers::new(None);
                loop {
                    source.refresh().await;
                    let status = source.status();
                    fetched.set(status.fetched);
                    failures.inc_by(status.failures.saturating_sub(failures.get()));
                    match source.file() {
                        Some(path) => {
                            let path = [path.to_owned()];
                            triggers.next(|| stamps(&path)).await;
                        }
                        None => {
                            tokio::select! {
                                () = tokio::time::sleep(source.period()) => {}
                                () = triggers.hup.next() => {}
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Takes up the answer-signing key `tongban keys rotate` made current
/// without a restart: `answer-keys/current` is read again when it changes
/// and on SIGHUP; keys that do not load leave the ones in force.
fn spawn_answer_key_reloader(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let current = [gw.config.data_dir.join(crate::proof::DIR).join("current")];
        let mut triggers = Triggers::new(Some(stamps(&current)));
        loop {
            let why = triggers.next(|| stamps(&current)).await;
            match crate::proof::AnswerKeys::open(&gw.config.data_dir) {
                Ok(keys) if keys.kid() != gw.answer_keys.load().kid() => {
                    tracing::info!(
                        kid = keys.kid(),
                        trigger = why,
                        "answer-signing key now signs; earlier keys stay published"
                    );
                    gw.answer_keys.store(Arc::new(keys));
                    if let Err(e) = gw.sync_answer_keys().await {
                        tracing::warn!(error = %e, "the new answer-signing key is registered in PostgreSQL with the next heartbeat");
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "answer-signing keys do not load; the ones in force stay");
                }
            }
        }
    })
}

/// Builds the upstream client again when the gateway's client certificate,
/// its key or the upstreams' CA change, and on SIGHUP; files that do not
/// load (half-written, key and certificate not matching) leave the client
/// in force.
fn spawn_upstream_tls_reloader(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(files) = gw
            .providers
            .upstreams()
            .map(crate::provider::Upstreams::tls_files)
        else {
            return;
        };
        let mut triggers = Triggers::new(Some(stamps(&files)));
        loop {
            let why = triggers.next(|| stamps(&files)).await;
            let Some(upstreams) = gw.providers.upstreams() else {
                return;
            };
            match upstreams.reload_tls() {
                Ok(()) => tracing::info!(
                    trigger = why,
                    "the upstream client certificate and CA are reloaded"
                ),
                Err(e) => {
                    tracing::error!(trigger = why, error = %e, "the upstream client certificate or CA does not load; the ones in force stay");
                }
            }
        }
    })
}

/// Reads the anomaly rules and the working-day calendar again when their
/// files change and on SIGHUP; files that do not load leave the rules in
/// force (logged).
fn spawn_flag_rules_reloader(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let files: Vec<_> = [&gw.config.calendar.file, &gw.config.alerts.rules]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut triggers = Triggers::new(Some(stamps(&files)));
        loop {
            let why = triggers.next(|| stamps(&files)).await;
            match gw.reload_flag_rules(why).await {
                Ok(true) => tracing::info!(
                    trigger = why,
                    "the anomaly rules or the working-day calendar changed and are in force"
                ),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(trigger = why, error = %e, "the anomaly rules or the working-day calendar do not load; the ones in force stay");
                }
            }
        }
    })
}

/// Every `alerts.interval_secs` (the first a few seconds after start):
/// today's flags into the metrics, new ones announced
/// ([`crate::alerts::check`]). A check that fails is logged; the next runs
/// on time.
fn spawn_flag_check(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = gw.config.alerts.interval_secs;
        if every == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut ticks = tokio::time::interval(Duration::from_secs(every));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            if let Err(e) = crate::alerts::check(&gw).await {
                tracing::warn!(error = %e, "the check of today's anomaly flags failed; the next one runs on time");
            }
        }
    })
}

/// Reads the department rate limits of `tongban.toml` again when the file
/// changes and on SIGHUP ([`Gateway::reload_rate_limits`]).
fn spawn_rate_limit_reloader(gw: Arc<Gateway>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let Some(path) = gw.config.source.clone() else {
            return;
        };
        let file = [path];
        let mut triggers = Triggers::new(Some(stamps(&file)));
        loop {
            let why = triggers.next(|| stamps(&file)).await;
            if let Err(e) = gw.reload_rate_limits(why).await {
                tracing::error!(trigger = why, error = %e, "the rate limits of the configuration file do not load; the limits in force stay");
            }
        }
    })
}

/// SIGHUP, where there is such a thing.
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn new() -> Self {
        Self {
            #[cfg(unix)]
            signal: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
        }
    }

    /// Resolves at the next SIGHUP (never, if it cannot be watched).
    async fn next(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// Size and modification time of every policy file.
fn fingerprint(dir: &std::path::Path) -> Vec<FileStamp> {
    let mut paths = vec![dir.join("departments.toml")];
    for sub in ["datasets", "grants"] {
        if let Ok(entries) = std::fs::read_dir(dir.join(sub)) {
            let mut found: Vec<_> = entries.flatten().map(|e| e.path()).collect();
            found.sort();
            paths.extend(found);
        }
    }
    stamps(&paths)
}

/// Resolves on SIGTERM or SIGINT. On Unix the handlers are in place once
/// this is called, not only once the future is first polled: a stop asked
/// for while the gateway is still starting (or before its accept loop
/// first looks) is kept, and the gateway stops cleanly as soon as it
/// serves, instead of dying by the signal with its audit writer unclosed.
///
/// # Panics
///
/// Outside a Tokio runtime with its I/O driver (as `tokio::signal` does).
pub fn termination_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let register = |kind: SignalKind, name: &str| match signal(kind) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, signal = name, "cannot listen for the signal: it will not stop the gateway cleanly");
                None
            }
        };
        let term = register(SignalKind::terminate(), "SIGTERM");
        let interrupt = register(SignalKind::interrupt(), "SIGINT");
        let wait = |s: Option<Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = wait(term) => {},
                () = wait(interrupt) => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
