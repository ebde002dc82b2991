//! Rate limits: per consumer department and per grant quota (governor, GCRA).
//!
//! A limit is written `"120/min"`: a burst of 120 that refills evenly over a
//! minute. Limiters outlive policy reloads as long as their rate is unchanged.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::clock::Clock;

/// A rate such as `120/min`: `count` requests per `per`. Read from files
/// as text, checked as it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct RateSpec {
    /// Requests allowed in one period (also the burst).
    pub count: NonZeroU32,
    /// The period.
    pub per: Duration,
}

impl FromStr for RateSpec {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const HINT: &str = "expected <count>/[<n>]<s|min|h|day>, e.g. \"120/min\" or \"100/10s\"";
        let (count, unit) = s.split_once('/').ok_or(HINT)?;
        let count = count.trim().parse::<NonZeroU32>().map_err(|_| HINT)?;
        let unit = unit.trim();
        // An optional whole number of units: "100/10s".
        let digits = unit
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(unit.len());
        let times: u32 = match &unit[..digits] {
            "" => 1,
            n => n.parse::<NonZeroU32>().map_err(|_| HINT)?.get(),
        };
        let per = match &unit[digits..] {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            _ => return Err(HINT),
        };
        Ok(Self {
            count,
            per: per * times,
        })
    }
}

impl TryFrom<String> for RateSpec {
    type Error = &'static str;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RateSpec> for String {
    fn from(r: RateSpec) -> Self {
        r.to_string()
    }
}

impl std::fmt::Display for RateSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.per.as_secs() {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            86_400 => write!(f, "{}/day", self.count),
            secs => write!(f, "{}/{secs}s", self.count),
        }
    }
}

/// One rate limiter on the gateway's clock.
pub type Limiter = RateLimiter<NotKeyed, InMemoryState, Clock, NoOpMiddleware<Nanos>>;

/// A limiter with the rate it enforces, so a reload can keep it when the rate is unchanged.
#[derive(Debug)]
pub struct RateLimit {
    /// The configured rate.
    pub spec: RateSpec,
    limiter: Limiter,
    clock: Clock,
}

impl RateLimit {
    /// A fresh limiter for `spec`.
    pub fn new(spec: RateSpec, clock: &Clock) -> Self {
        let period = spec.per / spec.count.get();
        let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(spec.count))
            .allow_burst(spec.count);
        Self {
            spec,
            limiter: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock: clock.clone(),
        }
    }

    /// Takes `n` from the budget at once (a batch counts each resident), or
    /// says how long to wait; more than the burst can never pass.
    pub fn check_n(&self, n: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
            Err(_) => Err(self.spec.per),
        }
    }

    /// Takes one request from the budget, or says how long to wait.
    pub fn check(&self) -> Result<(), Duration> {
        self.limiter
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates_and_refuses_nonsense() {
        let r: RateSpec = "120/min".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (120, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "120/min");
        for (text, per) in [
            ("5/s", 1),
            ("5/sec", 1),
            ("5/minute", 60),
            ("5/h", 3600),
            ("5/hour", 3600),
            ("5/d", 86_400),
            ("5/day", 86_400),
        ] {
            let r: RateSpec = text.parse().unwrap();
            assert_eq!(r.per, Duration::from_secs(per), "{text}");
        }
        let r: RateSpec = "100/10s".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (100, Duration::from_secs(10)));
        assert_eq!(r.to_string(), "100/10s");
        assert!("1/0s".parse::<RateSpec>().is_err());
        for bad in ["0/min", "10", "ten/min", "10/week", "-1/s"] {
            assert!(bad.parse::<RateSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn refuses_past_the_burst_and_refills_with_time() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let limit = RateLimit::new("2/min".parse().unwrap(), &clock);
        assert!(limit.check().is_ok());
        assert!(limit.check().is_ok());
        let wait = limit.check().unwrap_err();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        clock.advance(Duration::from_secs(30));
        assert!(limit.check().is_ok());
    }

    #[test]
    fn a_batch_takes_one_per_resident_and_never_more_than_is_left() {
        let clock = Clock::manual(time::OffsetDateTime::UNIX_EPOCH);
        let limit = RateLimit::new("5/min".parse().unwrap(), &clock);
        assert!(limit.check_n(3).is_ok());
        assert!(limit.check_n(3).is_err(), "2 left, 3 asked");
        assert!(limit.check_n(2).is_ok(), "a refused batch took nothing");
        assert!(limit.check().is_err());
        assert!(limit.check_n(0).is_ok(), "an empty batch takes nothing");
        let fresh = RateLimit::new("5/min".parse().unwrap(), &clock);
        assert!(
            fresh.check_n(6).is_err(),
            "more than the burst never passes"
        );
    }
}
