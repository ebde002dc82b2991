//! Rate limits that hold across the cluster.
//!
//! With `cluster.redis_url`, every per-department limit and grant quota is
//! one GCRA in Redis (the theoretical arrival time under one key), decided
//! by one Lua script on Redis's own clock, as Kong and APISIX do; a request
//! waits at most `redis_timeout_ms` for it. When Redis cannot decide (not
//! configured, unreachable, too slow), the node decides alone with its
//! share: each request takes as many cells from the local limiter as there
//! are live nodes, so N nodes together admit about the quota. A node that
//! loses Redis says so once in the log, and counts each fallback in metrics.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use crate::config::{ClusterConfig, redact_url};
use crate::metrics::Metrics;
use crate::pipeline::rate_limit::{RateLimit, RateSpec};

/// GCRA over one key, on Redis's clock (µs). ARGV: emission interval µs,
/// tolerance µs (the period: a full burst), cost (cells). Returns 0 when
/// admitted, else the wait in µs, or -1 when the cost can never be admitted.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
if interval * cost > tolerance then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - tolerance
if now < allow_at then return math.max(1, allow_at - now) end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.floor((new_tat - now) / 1000) + 1)
return 0
";

/// How long a node decides alone after Redis failed, before it asks again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A limit's identity in Redis.
#[derive(Debug, Clone, Copy)]
pub enum LimitKey<'a> {
    /// A consumer department's limit.
    Department(&'a str),
    /// A grant's quota.
    Grant(&'a str),
}

struct Redis {
    conn: ConnectionManager,
    script: redis::Script,
    timeout: Duration,
    /// ms since start until which Redis is not asked (after a failure).
    down_until: AtomicI64,
    down: AtomicBool,
    url: String,
}

/// The cluster's limits: Redis when it answers, else this node's share.
pub struct ClusterLimits {
    redis: Option<Redis>,
    share: AtomicU32,
    started: Instant,
}

impl std::fmt::Debug for ClusterLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLimits")
            .field("redis", &self.redis.as_ref().map(|r| r.url.clone()))
            .field("share", &self.share.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Why the cluster's Redis cannot be configured.
#[derive(Debug, thiserror::Error)]
pub enum RedisConfigError {
    /// The URL (shown without its password) is not usable.
    #[error("redis_url \"{url}\": {error}")]
    Url {
        /// The URL, its password replaced.
        url: String,
        /// Why.
        error: redis::RedisError,
    },
    /// `redis_password_env` names a variable that is not set.
    #[error("redis_password_env names {0}, which is not set")]
    PasswordUnset(String),
}

impl ClusterLimits {
    /// Limits for `config` (Redis is connected lazily, in the background).
    pub fn new(config: &ClusterConfig) -> Result<Self, RedisConfigError> {
        let redis = match &config.redis_url {
            None => None,
            Some(url) => {
                let shown = redact_url(url);
                let bad_url = |error| RedisConfigError::Url {
                    url: shown.clone(),
                    error,
                };
                let mut info = redis::IntoConnectionInfo::into_connection_info(url.as_str())
                    .map_err(bad_url)?;
                if let Some(var) = &config.redis_password_env {
                    let password = std::env::var(var)
                        .map_err(|_| RedisConfigError::PasswordUnset(var.clone()))?;
                    let settings = info.redis_settings().clone().set_password(password);
                    info = info.set_redis_settings(settings);
                }
                let client = redis::Client::open(info).map_err(bad_url)?;
                let timeout = Duration::from_millis(config.redis_timeout_ms.max(1));
                let manager_config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout.max(Duration::from_millis(500))))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_secs(1));
                let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(bad_url)?;
                Some(Redis {
                    conn,
                    script: redis::Script::new(GCRA),
                    timeout,
                    down_until: AtomicI64::new(0),
                    down: AtomicBool::new(false),
                    url: shown,
                })
            }
        };
        Ok(Self {
            redis,
            share: AtomicU32::new(1),
            started: Instant::now(),
        })
    }

    /// Whether limits are counted in Redis (configured and answering).
    pub fn redis_up(&self) -> Option<bool> {
        self.redis.as_ref().map(|r| !r.down.load(Ordering::Acquire))
    }

    /// Asks Redis for a PING within its timeout: `None` without Redis,
    /// else whether it answered, or what it said instead.
    pub async fn ping(&self) -> Option<Result<(), String>> {
        let r = self.redis.as_ref()?;
        let mut conn = r.conn.clone();
        let answer = tokio::time::timeout(
            r.timeout.max(Duration::from_millis(500)),
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await;
        Some(match answer {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(describe(&e)),
            Err(_) => Err(format!("no answer within {} ms", r.timeout.as_millis())),
        })
    }

    /// Sets how many live nodes share a quota when a node decides alone.
    pub fn set_share(&self, live_nodes: u32) {
        self.share.store(live_nodes.max(1), Ordering::Release);
    }

    /// This node's share divisor.
    pub fn share(&self) -> u32 {
        self.share.load(Ordering::Acquire)
    }

    /// Takes `n` from `limit` for the cluster, or says how long to wait.
    pub async fn check(
        &self,
        key: LimitKey<'_>,
        limit: &RateLimit,
        n: u32,
        metrics: &Metrics,
    ) -> Result<(), Duration> {
        if let Some(r) = &self.redis {
            let now = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
            if now >= r.down_until.load(Ordering::Acquire) {
                match r.gcra(key, limit.spec, n).await {
                    Ok(wait) => {
                        if r.down.swap(false, Ordering::AcqRel) {
                            metrics.cluster_redis_up.set(1);
                            tracing::info!(redis = %r.url, "rate limits are counted in Redis again");
                        }
                        return wait;
                    }
                    Err(e) => {
                        r.down_until.store(
                            now + i64::try_from(RETRY_AFTER.as_millis()).unwrap_or(1000),
                            Ordering::Release,
                        );
                        if !r.down.swap(true, Ordering::AcqRel) {
                            metrics.cluster_redis_up.set(0);
                            tracing::warn!(redis = %r.url, error = %e, share = self.share(), "Redis cannot count rate limits; this node enforces its share of each limit");
                        }
                    }
                }
            }
            metrics.cluster_limit_fallbacks.inc();
        }
        let cells = n.saturating_mul(self.share()).min(limit.spec.count.get());
        limit.check_n(cells)
    }
}

impl Redis {
    async fn gcra(
        &self,
        key: LimitKey<'_>,
        spec: RateSpec,
        n: u32,
    ) -> Result<Result<(), Duration>, String> {
        let name = match key {
            LimitKey::Department(d) => format!("tongban:rl:dept:{d}:{spec}"),
            LimitKey::Grant(g) => format!("tongban:rl:grant:{g}:{spec}"),
        };
        let period_us = i64::try_from(spec.per.as_micros()).unwrap_or(i64::MAX);
        let interval = (period_us / i64::from(spec.count.get())).max(1);
        let mut conn = self.conn.clone();
        let call = async {
            self.script
                .key(&name)
                .arg(interval)
                .arg(period_us)
                .arg(n)
                .invoke_async::<i64>(&mut conn)
                .await
        };
        let wait = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
            .map_err(|e| describe(&e))?;
        Ok(match wait {
            0 => Ok(()),
            w if w < 0 => Err(spec.per),
            w => Err(Duration::from_micros(u64::try_from(w).unwrap_or(0))),
        })
    }
}

/// What a Redis error says to an operator: a refused login is named as
/// such, with where the password comes from.
fn describe(e: &redis::RedisError) -> String {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        format!(
            "Redis refused the login ({e}): check the password (the variable redis_password_env names, or the URL's)"
        )
    } else {
        e.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_redis_login_is_named_as_such() {
        let refused = redis::RedisError::from((
            redis::ErrorKind::AuthenticationFailed,
            "WRONGPASS invalid username-password pair",
        ));
        let said = describe(&refused);
        assert!(
            said.starts_with("Redis refused the login") && said.contains("redis_password_env"),
            "{said}"
        );
        let other = redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        assert!(!describe(&other).contains("refused the login"));
    }
}
