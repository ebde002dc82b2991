//! The group-committing audit writer.
//!
//! One thread owns appends. Requests hand it an event body and wait; the
//! thread takes everything that is queued (up to `max_batch`), numbers and
//! chains the events, appends them with their block summaries and (every
//! `checkpoint_every` events) a signed checkpoint to the write-ahead file
//! ([`super::wal`]) as one record, `fdatasync`s it once (by default), inserts
//! the same into sled, then releases every waiting request. Many requests
//! share one sync; none is acknowledged before its event is durable. If the
//! write fails, every request of that group gets an error (the caller answers
//! 503 and sends no data) and nothing of the group is kept; if sled then
//! refuses the inserts of a durable group, the writer stops taking events
//! (a restart replays them). sled itself is flushed by a thread of its own
//! about once a second, which then removes the write-ahead segments sled
//! holds. A ticker also asks for a checkpoint every `checkpoint_secs`, and
//! stopping signs a last one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::blocks::{BlockSummary, block_of};
use super::checkpoint::{CheckpointSigner, SignedCheckpoint};
use super::event::{Event, EventBody, Hash};
use super::store::{AuditError, AuditStore, SealedEvent, sync_db_file};
use super::wal::{self, Wal};
use crate::clock::Clock;
use crate::config::Durability;
use crate::metrics::Metrics;

type Ack = oneshot::Sender<Result<u64, Arc<AuditError>>>;

/// Called by the writer once a request's events have their sequence numbers
/// (first, last) and before they are sealed: returns the hash to record in
/// each of them (a signed answer that names those numbers).
pub type Finalizer = Box<dyn FnOnce(u64, u64) -> Hash + Send>;

enum Msg {
    /// Events to append together; the ack carries the first one's sequence number.
    Append(Vec<EventBody>, Ack, Option<Finalizer>),
    /// Sign a checkpoint of the head if it moved; reply with the last checkpoint's seq.
    Checkpoint(Option<oneshot::Sender<u64>>),
    Stop,
}

/// Handle for appending events; cheap to share.
#[derive(Debug)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
    durable: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// Counters of the writer's work.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Group commits done.
    pub batches: AtomicU64,
    /// Events appended.
    pub events: AtomicU64,
    /// Total flush+sync time, microseconds.
    pub flush_micros: AtomicU64,
    /// Checkpoints signed.
    pub checkpoints: AtomicU64,
    /// `fdatasync`s of the write-ahead file.
    pub syncs: AtomicU64,
    /// The highest sequence number whose group was synced (with
    /// `durability = "fdatasync"`, at least every acknowledged one).
    pub synced_through: AtomicU64,
}

/// Where and how the writer appends.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// This node's id, written in every event.
    pub node: String,
    /// Whether to fdatasync the write-ahead file after each group.
    pub durability: Durability,
    /// Most events per group.
    pub max_batch: usize,
    /// How long a group waits for more events after a group of more than one.
    pub group_wait: Duration,
    /// Sign a checkpoint at least every this many events.
    pub checkpoint_every: u64,
    /// And at least this often while events arrive.
    pub checkpoint_interval: Duration,
    /// The clock for checkpoint times.
    pub clock: Clock,
}

impl AuditWriter {
    /// Starts the writer thread on `store`; `data_dir` is the sled directory
    /// (the write-ahead file is in it, and its `db` file is synced).
    pub fn start(
        store: AuditStore,
        data_dir: &Path,
        signer: Arc<CheckpointSigner>,
        metrics: Arc<Metrics>,
        options: WriterOptions,
    ) -> Result<Self, AuditError> {
        let sync = matches!(options.durability, Durability::Fdatasync);
        let wal = Wal::create(&data_dir.join(wal::DIR), sync)?;
        let head = store.head()?;
        let block = block_of(head.0 + 1);
        // Opening the store summarized every block up to the head
        // (`recover_blocks`), so none here means the head ends a block and
        // the next event starts a new one.
        let summary = store.block(block)?.unwrap_or_default();
        let mut last_checkpoint = store.last_checkpoint_seq()?;
        let mut suite_change = None;
        // A change of suite (audit.suite) ends the current epoch: its last
        // event gets a checkpoint naming the new suite, signed by both keys,
        // before any event of the new suite is written.
        if let Some(last) = store.get(head.0)? {
            let current = super::event::suite_of(last.version);
            if current != signer.suite() {
                // Named for the node that wrote the head event (the one
                // whose chain this is, should `node_id` change too).
                let cp = signer.sign_handover(
                    current,
                    &last.node,
                    head.0,
                    head.1,
                    options.clock.unix_millis(),
                )?;
                store.apply(AuditStore::entries(&[], &[], Some(&cp)))?;
                store.db().flush()?;
                sync_db_file(data_dir)?;
                last_checkpoint = head.0;
                let mut event = EventBody::system(
                    options.clock.unix_millis(),
                    super::EventKind::Other,
                    "audit.suite_change",
                );
                event.detail = Some(
                    serde_json::json!({
                        "from": current.name(),
                        "to": signer.suite().name(),
                        "checkpoint_seq": head.0,
                        "previous_key_id": cp.checkpoint.previous.as_ref().map(|p| p.key_id.clone()),
                        "key_id": cp.checkpoint.key_id,
                    })
                    .to_string(),
                );
                suite_change = Some(event);
                tracing::info!(
                    from = current.name(),
                    to = signer.suite().name(),
                    seq = head.0,
                    "audit suite changed: a new epoch starts after a checkpoint signed by both keys"
                );
            }
        }
        let (tx, rx) = mpsc::channel(options.max_batch.saturating_mul(8).max(64));
        let healthy = Arc::new(AtomicBool::new(true));
        // What is in the store at start survived whatever ended the last run.
        let durable = Arc::new(AtomicU64::new(head.0));
        let stats = Arc::new(WriterStats::default());
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let (tick_tx, interval) = (tx.clone(), options.checkpoint_interval);
            handle.spawn(async move {
                let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    if tick_tx.send(Msg::Checkpoint(None)).await.is_err() {
                        break;
                    }
                }
            });
        }
        let (retire, retired) = std::sync::mpsc::channel();
        let retirer = {
            let (db, data_dir) = (store.db().clone(), data_dir.to_owned());
            std::thread::Builder::new()
                .name("audit-wal-retire".into())
                .spawn(move || retire_segments(&db, &data_dir, sync, &retired))?
        };
        let mut state = State {
            store,
            data_dir: data_dir.to_owned(),
            sync,
            wal,
            retire: Some((retire, retirer)),
            broken: None,
            head,
            block: (block, summary),
            last_checkpoint,
            signer,
            metrics,
            options,
            healthy: healthy.clone(),
            durable: durable.clone(),
            stats: stats.clone(),
        };
        // The first event of a new epoch says so, for the officers' search.
        if let Some(event) = suite_change {
            let (ack, _) = oneshot::channel();
            let _ = tx.try_send(Msg::Append(vec![event], ack, None));
        }
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || state.run(rx))?;
        Ok(Self {
            tx,
            healthy,
            durable,
            stats,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends one event and waits until it is durable; returns its sequence number.
    pub async fn append(&self, body: EventBody) -> Result<u64, Arc<AuditError>> {
        self.append_many(vec![body]).await
    }

    /// Appends events in one group commit, consecutively numbered, and waits
    /// until all are durable; returns the first one's sequence number.
    pub async fn append_many(&self, bodies: Vec<EventBody>) -> Result<u64, Arc<AuditError>> {
        self.append_finalized(bodies, None).await
    }

    /// As [`Self::append_many`]; `finalize` runs in the writer once the
    /// events are numbered, and its hash is recorded in each of them.
    pub async fn append_finalized(
        &self,
        bodies: Vec<EventBody>,
        finalize: Option<Finalizer>,
    ) -> Result<u64, Arc<AuditError>> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Append(bodies, ack, finalize))
            .await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?;
        done.await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?
    }

    /// Signs a checkpoint of the current head (if it moved since the last one)
    /// and returns the sequence number the latest checkpoint covers.
    pub async fn checkpoint_now(&self) -> Result<u64, AuditError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Checkpoint(Some(ack)))
            .await
            .map_err(|_| AuditError::WriterStopped)?;
        done.await.map_err(|_| AuditError::WriterStopped)
    }

    /// Whether the last group commit succeeded and the thread is running.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// The last sequence number known durable: events up to it are in the
    /// store and synced (one read above it may still be unsynced).
    pub fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// Counters of the writer's work.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes what is queued, signs a last checkpoint, flushes, and stops the
    /// thread; later appends fail.
    pub async fn close(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // The queue is bounded: waiting for room rather than dropping the stop.
            let _ = self.tx.send(Msg::Stop).await;
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

/// A request's events waiting for the group commit.
type Pending = (Vec<EventBody>, Ack, Option<Finalizer>);

/// What one turn of the writer loop collected besides events.
#[derive(Default)]
struct Round {
    stop: bool,
    checkpoint: bool,
    waiting: Vec<oneshot::Sender<u64>>,
    events: usize,
}

impl Round {
    fn take(&mut self, msg: Option<Msg>, batch: &mut Vec<Pending>) {
        match msg {
            None | Some(Msg::Stop) => self.stop = true,
            Some(Msg::Checkpoint(ack)) => {
                self.checkpoint = true;
                self.waiting.extend(ack);
            }
            Some(Msg::Append(bodies, ack, finalize)) => {
                self.events += bodies.len();
                batch.push((bodies, ack, finalize));
            }
        }
    }
}

struct State {
    store: AuditStore,
    data_dir: PathBuf,
    sync: bool,
    wal: Wal,
    /// Segments ended go to the thread that flushes sled and removes them.
    retire: Option<(std::sync::mpsc::Sender<u64>, JoinHandle<()>)>,
    /// Set when sled refused the inserts of a durable group: no more groups.
    broken: Option<Arc<AuditError>>,
    head: (u64, Hash),
    block: (u64, BlockSummary),
    last_checkpoint: u64,
    signer: Arc<CheckpointSigner>,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    healthy: Arc<AtomicBool>,
    durable: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
}

impl State {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.options.max_batch);
        let mut busy = false;
        loop {
            let mut round = Round::default();
            round.take(rx.blocking_recv(), &mut batch);
            // Under load (the last group served several requests), wait a
            // moment for more: one flush and sync then serve a larger group.
            let deadline = busy.then(|| Instant::now() + self.options.group_wait);
            loop {
                while !round.stop && round.events < self.options.max_batch {
                    match rx.try_recv() {
                        Ok(msg) => round.take(Some(msg), &mut batch),
                        Err(_) => break,
                    }
                }
                let left = deadline.map_or(Duration::ZERO, |d| {
                    d.saturating_duration_since(Instant::now())
                });
                if round.stop
                    || round.checkpoint
                    || round.events >= self.options.max_batch
                    || left.is_zero()
                {
                    break;
                }
                // One sleep for the rest of the wait (polling in short
                // sleeps cost a context switch each), then take what came.
                std::thread::sleep(left);
            }
            busy = round.events > 1;
            let Round {
                stop,
                checkpoint,
                waiting,
                ..
            } = round;
            self.commit(&mut batch, checkpoint || stop);
            for ack in waiting {
                let _ = ack.send(self.last_checkpoint);
            }
            if stop {
                rx.close();
                // Requests that raced the stop are refused, never silently dropped.
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Append(_, ack, _) = msg {
                        let _ = ack.send(Err(Arc::new(AuditError::WriterStopped)));
                    }
                }
                self.finish();
                self.healthy.store(false, Ordering::Release);
                return;
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<Pending>, force_checkpoint: bool) {
        let (mut seq, mut prev) = self.head;
        let first = seq + 1;
        let mut sealed: Vec<SealedEvent> = Vec::with_capacity(batch.len());
        let mut summaries = Vec::new();
        let mut block = self.block.clone();
        let mut next_first = first;
        for (bodies, _, finalize) in batch.iter_mut() {
            let n = bodies.len() as u64;
            if let Some(f) = finalize.take() {
                if n > 0 {
                    let hash = f(next_first, next_first + n - 1);
                    for b in bodies.iter_mut() {
                        b.proof = Some(hash);
                    }
                }
            }
            next_first += n;
        }
        // Each request's count, before its bodies move into their events (a
        // failed group is refused, never retried, so nothing needs them after).
        let counts: Vec<u64> = batch.iter().map(|(b, _, _)| b.len() as u64).collect();
        let version = super::event::format_version(self.signer.suite());
        for body in batch.iter_mut().flat_map(|(bodies, _, _)| bodies.drain(..)) {
            seq += 1;
            let event = Event {
                version,
                seq,
                node: self.options.node.clone(),
                prev_hash: prev,
                body,
            };
            let (stored, hash) = event.seal();
            prev = hash;
            sealed.push((seq, stored, event.body.resident));
            if block_of(seq) != block.0 {
                summaries.push(std::mem::replace(
                    &mut block,
                    (block_of(seq), BlockSummary::default()),
                ));
            }
            block.1.add(seq, &event.body);
        }
        if !sealed.is_empty() {
            summaries.push(block.clone());
        }
        let due = seq > self.last_checkpoint
            && (force_checkpoint || seq - self.last_checkpoint >= self.options.checkpoint_every);
        if sealed.is_empty() && !due {
            return;
        }
        let checkpoint: Option<SignedCheckpoint> = due.then(|| {
            self.signer.sign(
                &self.options.node,
                seq,
                prev,
                self.options.clock.unix_millis(),
            )
        });

        let started = Instant::now();
        let entries = AuditStore::entries(&sealed, &summaries, checkpoint.as_ref());
        let record = self.wal.record(seq, &entries);
        let syncs = self.wal.syncs();
        let result = match &self.broken {
            Some(e) => Err(e.clone()),
            None => self.wal.append(&record).map_err(|e| Arc::new(e.into())),
        };
        if self.wal.syncs() > syncs {
            self.stats.syncs.store(self.wal.syncs(), Ordering::Relaxed);
            self.stats.synced_through.store(seq, Ordering::Release);
        }
        // Durable from here on: the same inserts into sled.
        let result = result.and_then(|()| {
            crate::faults::point(&self.data_dir, "audit.apply")
                .map_err(AuditError::from)
                .and_then(|()| self.store.apply(entries))
                .map_err(|e| {
                let e = Arc::new(e);
                tracing::error!(error = %e, "sled refused a durable audit group: taking no more events until a restart replays the write-ahead file");
                self.broken = Some(e.clone());
                e
            })
        });
        match result {
            Ok(()) => {
                self.head = (seq, prev);
                self.durable.store(seq, Ordering::Release);
                self.block = block;
                if checkpoint.is_some() {
                    self.last_checkpoint = seq;
                    self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                    self.metrics.audit_checkpoints.inc();
                }
                if !sealed.is_empty() {
                    self.metrics.audit_batch_size.observe(sealed.len() as f64);
                    self.metrics
                        .audit_flush_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                self.healthy.store(true, Ordering::Release);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .events
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.flush_micros.fetch_add(micros, Ordering::Relaxed);
                self.store.index_committed(&sealed);
                let mut next = first;
                for ((_, ack, _), n) in batch.drain(..).zip(counts) {
                    let _ = ack.send(Ok(next));
                    next += n;
                }
                self.rotate_if_due();
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit group commit failed: refusing these requests");
                self.healthy.store(false, Ordering::Release);
                for (_, ack, _) in batch.drain(..) {
                    let _ = ack.send(Err(e.clone()));
                }
            }
        }
    }

    /// Ends the current segment once it is large or old enough, and hands
    /// it to the thread that flushes sled and removes what sled holds.
    fn rotate_if_due(&mut self) {
        if self.wal.len() < ROTATE_BYTES && (self.wal.len() == 0 || self.wal.age() < ROTATE_AGE) {
            return;
        }
        match self.wal.rotate() {
            Ok(ended) => {
                if let Some((tx, _)) = &self.retire {
                    let _ = tx.send(ended);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "starting a new audit write-ahead segment failed: appending to the current one");
            }
        }
    }

    /// At a stop: flushes sled and removes every segment (sled holds them all).
    fn finish(&mut self) {
        if let Some((tx, thread)) = self.retire.take() {
            drop(tx);
            let _ = thread.join();
        }
        if self.broken.is_some() {
            return; // the segments are what a restart replays
        }
        let done = self
            .store
            .db()
            .flush()
            .map_err(AuditError::from)
            .and_then(|_| self.sync_db())
            .and_then(|()| {
                Ok(wal::remove_through(
                    self.wal.dir(),
                    self.wal.number(),
                    false,
                )?)
            });
        if let Err(e) = done {
            tracing::error!(error = %e, "flushing the audit store at stop failed: the next start replays the write-ahead file");
        }
    }

    fn sync_db(&self) -> Result<(), AuditError> {
        if self.sync {
            sync_db_file(&self.data_dir)?;
        }
        Ok(())
    }
}

/// A write-ahead segment ends at this size,
const ROTATE_BYTES: u64 = 8 << 20;
/// or this long after it began (then sled is flushed and it is removed).
const ROTATE_AGE: Duration = Duration::from_secs(1);

/// The retiring thread: for each ended segment, flushes sled (and syncs its
/// file), then removes the segments up to it. A failure keeps them; the
/// next round, or the next start's replay, covers them.
fn retire_segments(
    db: &sled::Db,
    data_dir: &Path,
    sync: bool,
    ended: &std::sync::mpsc::Receiver<u64>,
) {
    let dir = data_dir.join(wal::DIR);
    while let Ok(mut through) = ended.recv() {
        while let Ok(n) = ended.try_recv() {
            through = through.max(n);
        }
        let done = db
            .flush()
            .map_err(AuditError::from)
            .and_then(|_| if sync { sync_db_file(data_dir) } else { Ok(()) })
            .and_then(|()| Ok(wal::remove_through(&dir, through, true)?));
        if let Err(e) = done {
            tracing::error!(error = %e, "flushing the audit store behind the write-ahead file failed: keeping its segments");
        }
    }
}
