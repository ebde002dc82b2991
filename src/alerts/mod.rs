//! Anomaly flags while the gateway serves. Every `[alerts] interval_secs`
//! the check computes today's flags (local day; the history before it is
//! read once a day), sets `tongban_anomaly_flags` by kind and department,
//! and announces each flag not seen before: `tongban_anomaly_flags_raised`
//! counts it and the webhook, if configured, gets it. A flag is announced
//! once, on the node that finds it first in cluster mode. Officers mark
//! flags reviewed (`POST /v1/audit/flags/{id}/review`); the marks show in
//! the statistics. Metrics and the webhook name kinds, departments and
//! counts, never a person.

pub mod reviews;
pub mod webhook;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::{Value, json};
use time::Date;

use crate::audit::query::{EventFilter, format_time};
use crate::audit::stats::{Flag, FlagRules, StatsBuilder};
use crate::gateway::Gateway;
use crate::metrics::FlagLabels;

/// The marks, the webhook and what the last check left.
#[derive(Debug)]
pub struct Alerts {
    /// Review marks and announced flags.
    pub reviews: reviews::Reviews,
    /// Where new flags are posted, if configured.
    pub webhook: Option<Arc<webhook::Webhook>>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// What the checks of today have read.
    today: Option<Today>,
    /// The series set by the last check.
    shown: BTreeSet<FlagLabels>,
}

/// Today's checks: the history before today (read once), and on a single
/// node the builder fed with every event through sequence number `through`.
#[derive(Debug)]
struct Today {
    day: Date,
    rules: Arc<FlagRules>,
    history: StatsBuilder,
    builder: Option<StatsBuilder>,
    through: u64,
}

impl Alerts {
    /// The marks (in PostgreSQL in cluster mode, else in `db`) and the
    /// webhook the configuration names.
    pub fn open(
        cluster: Option<&Arc<crate::cluster::Cluster>>,
        db: &sled::Db,
        config: &crate::config::Config,
    ) -> Result<Self, String> {
        Ok(Self {
            reviews: reviews::Reviews::open(cluster, db, &config.data_dir)
                .map_err(|e| e.to_string())?,
            webhook: webhook::Webhook::from_config(&config.alerts)?.map(Arc::new),
            state: Mutex::default(),
        })
    }
}

/// Why a check could not run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The audit log could not be read.
    #[error("{0}")]
    Read(String),
    /// The marks could not be read or written.
    #[error(transparent)]
    Store(#[from] reviews::StoreError),
}

/// The statistics builder for `[from_ms, to_ms]` fed with every event of
/// the window, from this node's log or the cluster's central copy.
async fn feed(
    gw: &Gateway,
    mut builder: StatsBuilder,
    filter: EventFilter,
) -> Result<StatsBuilder, CheckError> {
    gw.audit
        .caught_up()
        .await
        .map_err(|e| CheckError::Read(e.to_string()))?;
    match &gw.cluster {
        Some(cluster) => {
            cluster
                .scan(&gw.audit_store, &filter, |e| builder.add(e))
                .await
                .map_err(|e| CheckError::Read(e.to_string()))?;
            Ok(builder)
        }
        None => {
            let store = gw.audit_store.clone();
            tokio::task::spawn_blocking(move || {
                crate::audit::query::scan(&store, &filter, |e| builder.add(e)).map(|()| builder)
            })
            .await
            .map_err(|e| CheckError::Read(e.to_string()))?
            .map_err(|e| CheckError::Read(e.to_string()))
        }
    }
}

/// Today's flags (local day, up to now). The history before today is read
/// once a day (and again when the rules change). On a single node each
/// check then feeds the builder only the events appended since the last
/// one, so a check costs what arrived since, not the whole day; in cluster
/// mode today's events are read again from PostgreSQL at each check (the
/// nodes' events arrive there out of order).
pub async fn todays_flags(gw: &Gateway) -> Result<Vec<Flag>, CheckError> {
    let now = gw.clock.now_utc().to_offset(gw.utc_offset);
    let today = now.date();
    let start_ms = i64::try_from(
        now.replace_time(time::Time::MIDNIGHT)
            .unix_timestamp_nanos()
            / 1_000_000,
    )
    .unwrap_or(0);
    let rules = gw.flag_rules.load_full();
    let kept = {
        let mut state = gw
            .alerts
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match state.today.take() {
            Some(t) if t.day == today && Arc::ptr_eq(&t.rules, &rules) => Some(t),
            _ => None,
        }
    };
    let mut t = match kept {
        Some(t) => t,
        None => {
            let history = EventFilter {
                from_ms: Some(start_ms - rules.history_days * 86_400_000),
                to_ms: Some(start_ms - 1),
                ..EventFilter::default()
            };
            let b = StatsBuilder::new(start_ms, gw.utc_offset, rules.clone());
            Today {
                day: today,
                rules: rules.clone(),
                history: feed(gw, b, history).await?,
                builder: None,
                through: 0,
            }
        }
    };
    gw.audit
        .caught_up()
        .await
        .map_err(|e| CheckError::Read(e.to_string()))?;
    let builder = match &gw.cluster {
        // This node's log, by sequence number: what was appended since the
        // last check, or all of today at the first.
        None => {
            let store = gw.audit_store.clone();
            let kept = t.builder.take();
            let history = t.history.clone();
            let through = t.through;
            let (b, through) = tokio::task::spawn_blocking(move || {
                read_local(&store, kept, history, through, start_ms)
            })
            .await
            .map_err(|e| CheckError::Read(e.to_string()))?
            .map_err(|e| CheckError::Read(e.to_string()))?;
            t.through = through;
            b
        }
        // The cluster's copy: all of today again.
        Some(_) => {
            let window = EventFilter {
                from_ms: Some(start_ms),
                to_ms: Some(gw.clock.unix_millis()),
                ..EventFilter::default()
            };
            feed(gw, t.history.clone(), window).await?
        }
    };
    let flags = builder.flags(&gw.pseudonyms);
    if gw.cluster.is_none() {
        t.builder = Some(builder);
    }
    gw.alerts
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .today = Some(t);
    Ok(flags)
}

/// This node's log read for today's check: the events appended since
/// `through` into the builder `kept`, or at the first check of the day
/// all of today into `history`. With the head read.
fn read_local(
    store: &crate::audit::AuditStore,
    kept: Option<StatsBuilder>,
    history: StatsBuilder,
    through: u64,
    start_ms: i64,
) -> Result<(StatsBuilder, u64), crate::audit::AuditError> {
    let (head, _) = store.head()?;
    // Chunk by chunk (each decoded once), newest first; the
    // builder counts the same whatever the order.
    let b = match kept {
        // What was appended since the last check.
        Some(mut b) => {
            if head > through {
                for item in store.events_desc(through + 1, head) {
                    b.add(&item?.1);
                }
            }
            b
        }
        // All of today: back from the head to a minute before
        // midnight (events are appended in the order they
        // arrive, give or take moments), today's only (the
        // history holds the rest).
        None => {
            let mut b = history;
            for item in store.events_desc(1, head) {
                let e = item?.1;
                if e.body.time_ms >= start_ms {
                    b.add(&e);
                } else if e.body.time_ms < start_ms - 60_000 {
                    break;
                }
            }
            b
        }
    };
    let from = through;
    Ok((b, head.max(from)))
}

/// The flags raised on `day` (local) under the rules in force; the
/// history before it is read only `with_history` (the volume flags need it).
pub async fn flags_of_day(
    gw: &Gateway,
    day: Date,
    with_history: bool,
) -> Result<Vec<Flag>, CheckError> {
    let start_ms = i64::try_from(
        day.midnight()
            .assume_offset(gw.utc_offset)
            .unix_timestamp_nanos()
            / 1_000_000,
    )
    .unwrap_or(0);
    let rules = gw.flag_rules.load_full();
    let from = if with_history {
        start_ms - rules.history_days * 86_400_000
    } else {
        start_ms
    };
    let window = EventFilter {
        from_ms: Some(from),
        to_ms: Some(start_ms + 86_400_000 - 1),
        ..EventFilter::default()
    };
    let builder = StatsBuilder::new(start_ms, gw.utc_offset, rules);
    let builder = feed(gw, builder, window).await?;
    let day = day.to_string();
    Ok(builder
        .finish(&gw.pseudonyms)
        .flags
        .into_iter()
        .filter(|f| f.day == day)
        .collect())
}

/// One check: today's flags into the metrics, the new ones announced. The
/// first check of a day (or after a start) also announces yesterday's
/// flags not announced yet: those raised after its last check.
pub async fn check(gw: &Gateway) -> Result<Vec<Flag>, CheckError> {
    let today = gw.today();
    let first_of_day = gw
        .alerts
        .state
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .today
        .as_ref()
        .is_none_or(|t| t.day != today);
    let flags = todays_flags(gw).await?;
    let mut to_announce = flags.clone();
    if first_of_day {
        if let Some(yesterday) = today.previous_day() {
            to_announce.extend(flags_of_day(gw, yesterday, true).await?);
        }
    }
    let mut counts: BTreeMap<FlagLabels, i64> = BTreeMap::new();
    for f in &flags {
        *counts.entry(labels(f)).or_default() += 1;
    }
    {
        let mut state = gw
            .alerts
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for gone in state.shown.iter().filter(|l| !counts.contains_key(*l)) {
            gw.metrics.anomaly_flags.get_or_create(gone).set(0);
        }
        for (l, n) in &counts {
            gw.metrics.anomaly_flags.get_or_create(l).set(*n);
        }
        state.shown = counts.keys().cloned().collect();
    }
    let now_ms = gw.clock.unix_millis();
    for f in &to_announce {
        if gw
            .alerts
            .reviews
            .announce(&f.id, &gw.config.node_id, now_ms)
            .await?
        {
            gw.metrics
                .anomaly_flags_raised
                .get_or_create(&labels(f))
                .inc();
            if let Some(hook) = &gw.alerts.webhook {
                hook.offer(webhook_body(gw, f, now_ms), &gw.metrics);
            }
        }
    }
    // A flag's identity holds its day: two days back nothing is new again.
    gw.alerts
        .reviews
        .forget_announced(now_ms - 2 * 86_400_000)
        .await?;
    let objections = gw
        .objections
        .list(None)
        .await
        .map_err(|e| CheckError::Read(e.to_string()))?;
    let today = gw.today().to_string();
    let open = objections
        .iter()
        .filter(|o| o.state == crate::objections::State::Open);
    gw.metrics
        .objections_open
        .set(i64::try_from(open.clone().count()).unwrap_or(i64::MAX));
    gw.metrics
        .objections_overdue
        .set(i64::try_from(open.filter(|o| today > o.due).count()).unwrap_or(i64::MAX));
    // The workflow's counts are their own: a store that cannot be read
    // leaves them as they were, not the rest of the check undone.
    if let Err(e) = workflow_metrics(gw, &today).await {
        tracing::warn!(error = %e, "the sharing workflow's open items could not be counted");
    }
    let year = gw.clock.now_utc().to_offset(gw.utc_offset).year();
    gw.metrics
        .calendar_covers_today
        .set(i64::from(gw.flag_rules.load().calendar.covers(year)));
    gw.metrics.anomaly_check_timestamp.set(gw.clock.unix_secs());
    Ok(flags)
}

/// The sharing requests waiting and the data objections open, each
/// owner's, and those past their due day, into the metrics: every owner of
/// a dataset in the catalog has its series (0 with none), so an alert
/// rule reads 0, not an absent series.
async fn workflow_metrics(gw: &Gateway, today: &str) -> Result<(), CheckError> {
    use crate::metrics::{OwnerLabels, StepLabels};
    let requests = gw
        .sharing
        .requests
        .list()
        .await
        .map_err(|e| CheckError::Read(e.to_string()))?;
    let objections = gw
        .sharing
        .objections
        .list()
        .await
        .map_err(|e| CheckError::Read(e.to_string()))?;
    let mut waiting: BTreeMap<StepLabels, (i64, i64)> = BTreeMap::new();
    let mut open: BTreeMap<OwnerLabels, (i64, i64)> = BTreeMap::new();
    let policy = gw.policy.snapshot();
    for d in policy.set.datasets.values() {
        let owner = d.spec.owner.to_string();
        for step in ["review", "answer"] {
            waiting.insert(
                StepLabels {
                    step,
                    owner: owner.clone(),
                },
                (0, 0),
            );
        }
        open.insert(OwnerLabels { owner }, (0, 0));
    }
    for r in &requests {
        let (step, due) = match r.state {
            crate::sharing::State::Filed => ("review", Some(&r.review_due)),
            crate::sharing::State::Reviewed => ("answer", r.answer_due.as_ref()),
            _ => continue,
        };
        let n = waiting
            .entry(StepLabels {
                step,
                owner: r.owner.clone(),
            })
            .or_default();
        n.0 += 1;
        n.1 += i64::from(due.is_some_and(|d| today > d.as_str()));
    }
    for o in objections
        .iter()
        .filter(|o| o.state == crate::data_objections::State::Open)
    {
        let n = open
            .entry(OwnerLabels {
                owner: o.owner.clone(),
            })
            .or_default();
        n.0 += 1;
        n.1 += i64::from(today > o.due.as_str());
    }
    let m = &gw.metrics;
    m.sharing_requests_open.clear();
    m.sharing_requests_overdue.clear();
    for (l, (n, late)) in &waiting {
        m.sharing_requests_open.get_or_create(l).set(*n);
        m.sharing_requests_overdue.get_or_create(l).set(*late);
    }
    m.data_objections_open.clear();
    m.data_objections_overdue.clear();
    for (l, (n, late)) in &open {
        m.data_objections_open.get_or_create(l).set(*n);
        m.data_objections_overdue.get_or_create(l).set(*late);
    }
    Ok(())
}

fn labels(f: &Flag) -> FlagLabels {
    FlagLabels {
        kind: f.kind.to_owned(),
        department: f.consumer.clone().unwrap_or_else(|| "-".into()),
    }
}

/// What the webhook gets: the flag without the person.
fn webhook_body(gw: &Gateway, f: &Flag, now_ms: i64) -> Value {
    json!({
        "id": f.id,
        "kind": f.kind,
        "department": f.consumer,
        "day": f.day,
        "detail": f.detail,
        "events": f.refs.len(),
        "node": gw.config.node_id,
        "raised_at": format_time(now_ms, gw.utc_offset),
    })
}
