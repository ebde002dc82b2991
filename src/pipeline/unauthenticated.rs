//! Refusals before authentication, limited per source address: a flood of
//! junk (no token, a forged one, unknown routes) must not fill the audit
//! disk one synced event at a time. Up to the limit each refusal is audited
//! as always; past it the refusals of one source are counted and written as
//! one `unauthenticated.summary` event per source and minute, and answered
//! 429 at once. Authenticated requests from the same address are not
//! counted here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;

use governor::{Quota, RateLimiter};

use crate::audit::{EventBody, EventKind, Outcome};
use crate::clock::Clock;
use crate::pipeline::rate_limit::RateSpec;
use crate::problem::ProblemType;

type Keyed = RateLimiter<
    IpAddr,
    governor::state::keyed::HashMapStateStore<IpAddr>,
    Clock,
    governor::middleware::NoOpMiddleware<governor::nanos::Nanos>,
>;

/// Most sources counted apart in one minute's summaries.
const MAX_SOURCES: usize = 10_000;

/// The source a refusal counts against: an IPv4 address, or an IPv6 /64 (a
/// caller holds a whole /64 and could rotate through it).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
    }
}

/// The per-source limit and the counts past it.
#[derive(Debug)]
pub struct UnauthenticatedLimit {
    spec: RateSpec,
    limiter: Keyed,
    /// Refusals past the limit, per source, since the last summary.
    over: Mutex<HashMap<IpAddr, u64>>,
    clock: Clock,
}

impl UnauthenticatedLimit {
    /// A limit of `spec` per source address.
    pub fn new(spec: RateSpec, clock: &Clock) -> Self {
        let period = spec.per / spec.count.get();
        let quota = Quota::with_period(period.max(std::time::Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
            .allow_burst(spec.count);
        Self {
            spec,
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            over: Mutex::default(),
            clock: clock.clone(),
        }
    }

    /// The configured rate.
    pub fn spec(&self) -> RateSpec {
        self.spec
    }

    /// Whether a refusal from `source` is audited on its own (within the
    /// limit); past it, counts it for the summary and says no.
    pub fn admit(&self, source: IpAddr) -> bool {
        let source = source_key(source);
        if self.limiter.check_key(&source).is_ok() {
            return true;
        }
        let mut over = self
            .over
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Past this many sources in one minute, the rest count together.
        let source = if over.len() >= MAX_SOURCES && !over.contains_key(&source) {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            source
        };
        *over.entry(source).or_insert(0) += 1;
        false
    }

    /// The summary events of the refusals counted since the last call (one
    /// per source), and forgets the limiter state of quiet sources.
    pub fn take_summaries(&self) -> Vec<EventBody> {
        let counts = std::mem::take(
            &mut *self
                .over
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        self.limiter.retain_recent();
        let now = self.clock.unix_millis();
        let mut sources: Vec<(IpAddr, u64)> = counts.into_iter().collect();
        sources.sort();
        sources
            .into_iter()
            .map(|(source, count)| {
                let mut e = EventBody::system(now, EventKind::Other, "unauthenticated.summary");
                e.source = source.to_string().into();
                e.status = 429;
                e.outcome = Outcome::Deny;
                e.reason = Some(ProblemType::UnauthenticatedRateLimited.slug().into());
                e.detail = Some(
                    serde_json::json!({"source": source.to_string(), "count": count, "limit": self.spec.to_string()})
                        .to_string(),
                );
                e
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_sources_count_by_their_64() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let limit = UnauthenticatedLimit::new("2/min".parse().unwrap(), &clock);
        for host in 1..=4u16 {
            let ip: IpAddr = format!("2001:db8:1:2::{host:x}").parse().unwrap();
            let admitted = limit.admit(ip);
            assert_eq!(admitted, host <= 2, "host {host}");
        }
        assert!(
            limit.admit("2001:db8:1:3::1".parse().unwrap()),
            "another /64"
        );
        assert!(limit.admit("10.0.0.1".parse().unwrap()));
        let summaries = limit.take_summaries();
        assert_eq!(summaries.len(), 1);
        assert_eq!(&*summaries[0].source, "2001:db8:1:2::");
    }
}
