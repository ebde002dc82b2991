//! The group-committing audit writer.
//!
//! One thread owns appends. Requests hand it their event bodies already
//! encoded ([`EncodedBody`], on the request's own thread) and wait; the
//! thread takes everything that is queued (up to `max_batch`), frames,
//! numbers, chains and hashes the events, appends them and (every
//! `checkpoint_every` events) a signed checkpoint to the write-ahead file
//! ([`super::wal`]) as one record, `fdatasync`s it once (by default),
//! publishes the durable sequence number, releases every waiting request
//! with one wake of the task that answers them, and hands the group to the
//! applier ([`super::applier`]), which files it in sled behind. Many
//! requests share one sync; none is acknowledged before its event is
//! durable, and only the write-ahead file is on that path.
//!
//! A group closes as soon as no request that will append is still on its
//! way (the gateway counts them: [`InFlight`]), or once its oldest request
//! has waited `group_wait` (default 300 µs), or when it is full; never on a
//! fixed sleep. An idle gateway writes each request's event at once.
//!
//! If the write fails, every request of that group gets an error (the
//! caller answers 503 and sends no data) and nothing of the group is kept:
//! the failed write is cut off the segment again, and the next group is
//! written after the last good record (if even the cut fails, the file
//! refuses every later group, and the gateway stays unready until a
//! restart). While the applier is behind (sled refused a durable group),
//! the writer refuses new groups the same way, until it has caught up.
//! About once a second the writer starts a new write-ahead segment; the
//! applier removes the old one once sled holds it. A ticker also asks for a
//! checkpoint every `checkpoint_secs`, and stopping signs a last one.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::applier::{Applier, Group, Progress, Work};
use super::checkpoint::{CheckpointSigner, SignedCheckpoint};
use super::event::{EncodedBody, Event, EventBody, Hash};
use super::store::{AuditError, AuditStore, SealedEvent, sync_db_file};
use super::wal::{self, Tree, Wal};
use crate::clock::Clock;
use crate::config::Durability;
use crate::metrics::Metrics;

type Ack = oneshot::Sender<Result<u64, Arc<AuditError>>>;

/// A group's answers to its requests, handed to the task that sends them.
type Acks = Vec<(Ack, Result<u64, Arc<AuditError>>)>;

/// A request that will append an event and has not yet handed it to the
/// writer: while any is counted, a group waits for it (at most
/// `group_wait`). Counted from creation until [`InFlight::release`] or drop.
#[derive(Debug)]
pub struct InFlight {
    shared: Arc<OnWay>,
    counted: AtomicBool,
}

/// The count of requests on their way, and how to wake the writer when the
/// last one goes away without appending.
#[derive(Debug)]
struct OnWay {
    count: AtomicUsize,
    wake: mpsc::Sender<Msg>,
}

impl InFlight {
    /// No longer on its way: it will append nothing (a group waiting for
    /// it is told, if it was the last one).
    pub fn release(&self) {
        if self.uncount() {
            let _ = self.shared.wake.try_send(Msg::Wake);
        }
    }

    /// Uncounts it; whether it was the last one on its way.
    fn uncount(&self) -> bool {
        self.hand_over() && self.shared.count.fetch_sub(1, Ordering::AcqRel) == 1
    }

    /// Hands its place in the count to the message that carries its
    /// events: the writer uncounts it when it takes them, so that it never
    /// sees a request neither queued nor counted. Whether it was counted.
    fn hand_over(&self) -> bool {
        self.counted.swap(false, Ordering::AcqRel)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.release();
    }
}

/// Called by the writer once a request's events have their sequence numbers
/// (first, last) and before they are sealed: returns the hash to record in
/// each of them (a signed answer that names those numbers).
pub type Finalizer = Box<dyn FnOnce(u64, u64) -> Hash + Send>;

enum Msg {
    /// Events to append together, encoded, with their bodies (for the
    /// block summaries and the resident index), when they were sent and
    /// whether their request is counted on its way ([`InFlight`]); the ack
    /// carries the first one's sequence number.
    Append(
        Vec<(EncodedBody, EventBody)>,
        Ack,
        Option<Finalizer>,
        Instant,
        bool,
    ),
    /// Sign a checkpoint of the head if it moved; reply with the last checkpoint's seq.
    Checkpoint(Option<oneshot::Sender<u64>>),
    /// The last request on its way went away without appending.
    Wake,
    Stop,
}

/// Handle for appending events; cheap to share.
#[derive(Debug)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    on_way: Arc<OnWay>,
    healthy: Arc<AtomicBool>,
    durable: Arc<AtomicU64>,
    /// Durable groups of this run (what [`Self::caught_up`] waits for).
    committed: Arc<AtomicU64>,
    progress: Arc<Progress>,
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
    /// The longest a group waits for requests still on their way.
    pub group_wait: Duration,
    /// Sign a checkpoint at least every this many events.
    pub checkpoint_every: u64,
    /// And at least this often while events arrive.
    pub checkpoint_interval: Duration,
    /// The clock for checkpoint times.
    pub clock: Clock,
}

/// A change of suite (`audit.suite`) ends the current epoch: its last
/// event gets a checkpoint naming the new suite, signed by both keys, before
/// any event of the new suite is written. Returns the event that says so,
/// the first of the new epoch; `None` when the suite is unchanged.
fn hand_over_suite(
    store: &AuditStore,
    data_dir: &Path,
    signer: &CheckpointSigner,
    clock: &Clock,
    head: (u64, Hash),
) -> Result<Option<EventBody>, AuditError> {
    let Some(last) = store.get(head.0)? else {
        return Ok(None);
    };
    let current = super::event::suite_of(last.version);
    if current == signer.suite() {
        return Ok(None);
    }
    // Named for the node that wrote the head event (the one
    // whose chain this is, should `node_id` change too).
    let cp = signer.sign_handover(current, &last.node, head.0, head.1, clock.unix_millis())?;
    store.apply(AuditStore::entries(&[], &[], Some(&cp)))?;
    store.db().flush()?;
    sync_db_file(data_dir)?;
    let mut event = EventBody::system(
        clock.unix_millis(),
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
    tracing::info!(
        from = current.name(),
        to = signer.suite().name(),
        seq = head.0,
        "audit suite changed: a new epoch starts after a checkpoint signed by both keys"
    );
    Ok(Some(event))
}

/// The task that answers a group's requests: one wake per group from the
/// writer thread, the answers then sent on the runtime's own threads.
fn spawn_acker() -> Option<mpsc::UnboundedSender<Acks>> {
    let handle = tokio::runtime::Handle::try_current().ok()?;
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<Acks>();
    handle.spawn(async move {
        while let Some(acks) = ack_rx.recv().await {
            for (ack, result) in acks {
                let _ = ack.send(result);
            }
        }
    });
    Some(ack_tx)
}

/// Asks the writer for a checkpoint every `interval` (at least 100 ms); it
/// signs one only if events arrived since the last.
fn spawn_checkpoint_ticker(tx: mpsc::Sender<Msg>, interval: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    handle.spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(100)));
        ticker.tick().await;
        loop {
            ticker.tick().await;
            if tx.send(Msg::Checkpoint(None)).await.is_err() {
                break;
            }
        }
    });
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
        let mut last_checkpoint = store.last_checkpoint_seq()?;
        let suite_change = hand_over_suite(&store, data_dir, &signer, &options.clock, head)?;
        if suite_change.is_some() {
            last_checkpoint = head.0;
        }
        let (tx, rx) = mpsc::channel(options.max_batch.saturating_mul(8).max(64));
        let on_way = Arc::new(OnWay {
            count: AtomicUsize::new(0),
            wake: tx.clone(),
        });
        let acker = spawn_acker();
        let healthy = Arc::new(AtomicBool::new(true));
        // What is in the store at start survived whatever ended the last run.
        let durable = Arc::new(AtomicU64::new(head.0));
        let stats = Arc::new(WriterStats::default());
        spawn_checkpoint_ticker(tx.clone(), options.checkpoint_interval);
        let applier = Applier::start(store, data_dir, sync, head.0)?;
        let committed = Arc::new(AtomicU64::new(0));
        let progress = applier.progress().clone();
        let node = super::event::encode_node(&options.node);
        let mut state = State {
            wal,
            applier,
            head,
            last_checkpoint,
            signer,
            metrics,
            options,
            healthy: healthy.clone(),
            durable: durable.clone(),
            committed: committed.clone(),
            stats: stats.clone(),
            on_way: on_way.clone(),
            acker,
            node,
        };
        // The first event of a new epoch says so, for the officers' search.
        if let Some(event) = suite_change {
            let (ack, _) = oneshot::channel();
            let encoded = event.encode();
            let _ = tx.try_send(Msg::Append(
                vec![(encoded, event)],
                ack,
                None,
                Instant::now(),
                false,
            ));
        }
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || state.run(rx))?;
        Ok(Self {
            tx,
            on_way,
            healthy,
            durable,
            committed,
            progress,
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
        self.append_on_way(bodies, finalize, None).await
    }

    /// As [`Self::append_finalized`] for a request counted by `in_flight`,
    /// released once its events are queued.
    pub async fn append_on_way(
        &self,
        bodies: Vec<EventBody>,
        finalize: Option<Finalizer>,
        in_flight: Option<&InFlight>,
    ) -> Result<u64, Arc<AuditError>> {
        // Encoded here, on the request's thread, not on the writer's.
        let events = bodies.into_iter().map(|b| (b.encode(), b)).collect();
        let (ack, done) = oneshot::channel();
        let counted = in_flight.is_some_and(InFlight::hand_over);
        let sent = self
            .tx
            .send(Msg::Append(events, ack, finalize, Instant::now(), counted))
            .await;
        if sent.is_err() {
            if counted {
                self.on_way.count.fetch_sub(1, Ordering::AcqRel);
            }
            return Err(Arc::new(AuditError::WriterStopped));
        }
        done.await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?
    }

    /// Counts a request that will append an event until it has (see [`InFlight`]).
    pub fn in_flight(&self) -> InFlight {
        self.on_way.count.fetch_add(1, Ordering::AcqRel);
        InFlight {
            shared: self.on_way.clone(),
            counted: AtomicBool::new(true),
        }
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

    /// Whether the last group commit succeeded, the store is not behind
    /// the write-ahead file, and the thread is running.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.progress.is_behind() && !self.tx.is_closed()
    }

    /// The last sequence number known durable: events up to it are in the
    /// write-ahead file and synced (one read above it may still be unsynced).
    pub fn durable_seq(&self) -> u64 {
        self.durable.load(Ordering::Acquire)
    }

    /// The last sequence number filed in sled, with every event before it:
    /// what the store's readers (and the cluster's shipper) see.
    pub fn applied_seq(&self) -> u64 {
        self.progress.applied()
    }

    /// Waits until the store holds every group durable now (events and
    /// checkpoints): a reader that waits for this first misses no
    /// acknowledged event and no signed checkpoint. At most ten seconds
    /// (then the store is behind: [`AuditError::Behind`]).
    pub async fn caught_up(&self) -> Result<(), AuditError> {
        self.progress
            .reach(
                self.committed.load(Ordering::Acquire),
                Duration::from_secs(10),
            )
            .await
    }

    /// Whether sled refused durable events not yet filed.
    pub fn is_behind(&self) -> bool {
        self.progress.is_behind()
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
type Pending = (Vec<(EncodedBody, EventBody)>, Ack, Option<Finalizer>);

/// What one turn of the writer loop collected besides events.
#[derive(Default)]
struct Round {
    stop: bool,
    checkpoint: bool,
    waiting: Vec<oneshot::Sender<u64>>,
    events: usize,
    /// When the longest-waiting request of the group sent its events.
    oldest: Option<Instant>,
}

impl Round {
    fn take(&mut self, msg: Option<Msg>, batch: &mut Vec<Pending>, on_way: &OnWay) {
        match msg {
            None | Some(Msg::Stop) => self.stop = true,
            Some(Msg::Wake) => {}
            Some(Msg::Checkpoint(ack)) => {
                self.checkpoint = true;
                self.waiting.extend(ack);
            }
            Some(Msg::Append(bodies, ack, finalize, sent, counted)) => {
                if counted {
                    on_way.count.fetch_sub(1, Ordering::AcqRel);
                }
                self.events += bodies.len();
                self.oldest = Some(self.oldest.map_or(sent, |o| o.min(sent)));
                batch.push((bodies, ack, finalize));
            }
        }
    }
}

/// Runs each signed answer's finalizer with the sequence numbers its
/// events will have (the group's first is `first`), and records the hash
/// of the proof it signed in those events.
fn finalize_proofs(batch: &mut [Pending], first: u64) {
    let mut next_first = first;
    for (bodies, _, finalize) in batch.iter_mut() {
        let n = bodies.len() as u64;
        if let Some(f) = finalize.take() {
            if n > 0 {
                let hash = f(next_first, next_first + n - 1);
                for (encoded, body) in bodies.iter_mut() {
                    encoded.proof = Some(hash);
                    body.proof = Some(hash);
                }
            }
        }
        next_first += n;
    }
}

struct State {
    wal: Wal,
    /// Files durable groups in sled, behind.
    applier: Applier,
    head: (u64, Hash),
    last_checkpoint: u64,
    signer: Arc<CheckpointSigner>,
    metrics: Arc<Metrics>,
    options: WriterOptions,
    healthy: Arc<AtomicBool>,
    durable: Arc<AtomicU64>,
    /// Durable groups of this run.
    committed: Arc<AtomicU64>,
    stats: Arc<WriterStats>,
    /// Requests on their way to append (see [`InFlight`]).
    on_way: Arc<OnWay>,
    /// The task that answers requests, if the writer runs beside a runtime.
    acker: Option<mpsc::UnboundedSender<Acks>>,
    /// This node's id as the canonical bytes hold it.
    node: Vec<u8>,
}

impl State {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.options.max_batch);
        // Only to wait for the queue with a deadline.
        let waiter = match tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "the audit writer cannot wait for its queue: taking no events");
                self.healthy.store(false, Ordering::Release);
                return;
            }
        };
        // Whether the last group served more than one request: then requests
        // arrive faster than a group is written, and one that is not yet
        // counted on its way is likely to come within `group_wait`.
        let mut busy = false;
        loop {
            let mut round = Round::default();
            round.take(waiter.block_on(rx.recv()), &mut batch, &self.on_way);
            // Under load: how many events the group held when it last
            // looked again for more.
            let mut looked = None;
            loop {
                while !round.stop && round.events < self.options.max_batch {
                    match rx.try_recv() {
                        Ok(msg) => round.take(Some(msg), &mut batch, &self.on_way),
                        Err(_) => break,
                    }
                }
                if round.stop || round.checkpoint || round.events >= self.options.max_batch {
                    break;
                }
                // No request on its way, and not busy, or under load a look
                // found nothing new: nothing to wait for.
                if self.on_way.count.load(Ordering::Acquire) == 0
                    && (!busy || looked == Some(round.events))
                {
                    break;
                }
                let left = round.oldest.map_or(Duration::ZERO, |o| {
                    (o + self.options.group_wait).saturating_duration_since(Instant::now())
                });
                if left.is_zero() {
                    break;
                }
                if busy {
                    // Under load, requests not yet counted are likely to
                    // come: look again in a moment (sleeping, not woken per
                    // request: a wake costs a context switch each), and
                    // close once a look finds nothing new and none on its way.
                    looked = Some(round.events);
                    std::thread::sleep(left.min(LOOK_AGAIN));
                    continue;
                }
                // A request is on its way: take it when it comes.
                match waiter.block_on(async { tokio::time::timeout(left, rx.recv()).await }) {
                    Ok(msg) => round.take(msg, &mut batch, &self.on_way),
                    Err(_) => break,
                }
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
                    if let Msg::Append(_, ack, _, _, _) = msg {
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
        finalize_proofs(batch, first);
        // Each request's count, before its bodies move into their events (a
        // failed group is refused, never retried, so nothing needs them after).
        let counts: Vec<u64> = batch.iter().map(|(b, _, _)| b.len() as u64).collect();
        let events = counts.iter().sum::<u64>() as usize;
        let mut sealed: Vec<SealedEvent> = Vec::with_capacity(events);
        let mut bodies: Vec<EventBody> = Vec::with_capacity(events);
        let version = super::event::format_version(self.signer.suite());
        for (encoded, body) in batch.iter_mut().flat_map(|(bodies, _, _)| bodies.drain(..)) {
            seq += 1;
            let (stored, hash) = Event::seal_encoded(version, seq, &self.node, &prev, &encoded);
            prev = hash;
            sealed.push((seq, stored, body.resident));
            bodies.push(body);
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
        let syncs = self.wal.syncs();
        let result = self.write_group(seq, &sealed, checkpoint.as_ref());
        if self.wal.syncs() > syncs {
            self.stats.syncs.store(self.wal.syncs(), Ordering::Relaxed);
            self.stats.synced_through.store(seq, Ordering::Release);
        }
        match result {
            Ok(()) => {
                self.head = (seq, prev);
                self.durable.store(seq, Ordering::Release);
                if checkpoint.is_some() {
                    self.last_checkpoint = seq;
                }
                self.count_group(sealed.len(), checkpoint.is_some(), started);
                // Counted before any request is answered: a reader that
                // starts after an answer waits for this group.
                let number = self.committed.load(Ordering::Acquire) + 1;
                self.committed.store(number, Ordering::Release);
                let mut next = first;
                let mut acks = Vec::with_capacity(batch.len());
                for ((_, ack, _), n) in batch.drain(..).zip(counts) {
                    acks.push((ack, Ok(next)));
                    next += n;
                }
                self.answer(acks);
                self.applier.send(Work::Group(Group {
                    events: sealed,
                    bodies,
                    checkpoint: checkpoint.map(Box::new),
                    through: seq,
                    number,
                }));
                self.rotate_if_due();
            }
            Err(e) => {
                // A store behind is unready by itself (the applier said so,
                // once), until it catches up; a failed write until a group
                // is written again.
                if !matches!(*e, AuditError::Behind) {
                    tracing::error!(error = %e, events = batch.len(), "audit group commit failed: refusing these requests");
                    self.healthy.store(false, Ordering::Release);
                }
                let acks = batch
                    .drain(..)
                    .map(|(_, ack, _)| (ack, Err(e.clone())))
                    .collect();
                self.answer(acks);
            }
        }
    }

    /// Writes a group's record (its sealed events and checkpoint) to the
    /// write-ahead file, synced as `durability` says; refused while the
    /// store is behind the file.
    fn write_group(
        &mut self,
        seq: u64,
        sealed: &[SealedEvent],
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Result<(), Arc<AuditError>> {
        if self.applier.progress().is_behind() {
            // The store is behind the write-ahead file: no new group until
            // it has caught up (readiness says so meanwhile).
            Err(Arc::new(AuditError::Behind))
        } else {
            let keys: Vec<[u8; 8]> = sealed.iter().map(|(s, _, _)| s.to_be_bytes()).collect();
            let encoded_checkpoint = checkpoint
                .as_ref()
                .map(|cp| (cp.checkpoint.seq.to_be_bytes(), cp.encode()));
            let mut parts: Vec<(Tree, &[u8], &[u8])> = sealed
                .iter()
                .zip(&keys)
                .map(|((_, stored, _), key)| (Tree::Sealed, key.as_slice(), stored.as_slice()))
                .collect();
            if let Some((key, value)) = &encoded_checkpoint {
                parts.push((Tree::Checkpoints, key.as_slice(), value.as_slice()));
            }
            let record = self.wal.record_parts(seq, &parts);
            self.wal.append(&record).map_err(|e| Arc::new(e.into()))
        }
    }

    /// Counts a written group in the metrics and the writer's statistics.
    fn count_group(&self, events: usize, checkpointed: bool, started: Instant) {
        if checkpointed {
            self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
            self.metrics.audit_checkpoints.inc();
        }
        if events > 0 {
            self.metrics.audit_batch_size.observe(events as f64);
            self.metrics
                .audit_flush_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        self.healthy.store(true, Ordering::Release);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(events as u64, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.flush_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Answers a group's requests: one wake of the answering task, or each
    /// request from here if there is none (the task has stopped, or the
    /// writer runs without a runtime).
    fn answer(&self, acks: Acks) {
        let acks = match &self.acker {
            Some(tx) => match tx.send(acks) {
                Ok(()) => return,
                Err(mpsc::error::SendError(acks)) => acks,
            },
            None => acks,
        };
        for (ack, result) in acks {
            let _ = ack.send(result);
        }
    }

    /// Ends the current segment once it is large or old enough, and tells
    /// the applier (which removes it once sled holds its records).
    fn rotate_if_due(&mut self) {
        if self.wal.len() < ROTATE_BYTES && (self.wal.len() == 0 || self.wal.age() < ROTATE_AGE) {
            return;
        }
        match self.wal.rotate() {
            Ok(ended) => self.applier.send(Work::SegmentEnded(ended)),
            Err(e) => {
                tracing::error!(error = %e, "starting a new audit write-ahead segment failed: appending to the current one");
            }
        }
    }

    /// At a stop: the applier files what is pending, flushes sled and
    /// removes every segment (sled then holds them all).
    fn finish(&mut self) {
        self.applier.stop(self.wal.number());
    }
}

/// Under load, how often a group still open looks for more requests.
const LOOK_AGAIN: Duration = Duration::from_micros(50);

/// A write-ahead segment ends at this size,
const ROTATE_BYTES: u64 = 8 << 20;
/// or this long after it began (it is removed once the applier has filed
/// its records and sled is flushed).
const ROTATE_AGE: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::tests::body;

    fn writer(dir: &Path, group_wait: Duration) -> (AuditWriter, AuditStore) {
        writer_with(dir, |o| o.group_wait = group_wait)
    }

    fn writer_with(dir: &Path, set: impl FnOnce(&mut WriterOptions)) -> (AuditWriter, AuditStore) {
        writer_counted(dir, Arc::new(Metrics::new()), set)
    }

    fn writer_counted(
        dir: &Path,
        metrics: Arc<Metrics>,
        set: impl FnOnce(&mut WriterOptions),
    ) -> (AuditWriter, AuditStore) {
        let mut options = WriterOptions {
            node: "node-1".into(),
            durability: Durability::Flush,
            max_batch: 512,
            group_wait: Duration::ZERO,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(3600),
            clock: Clock::system(),
        };
        set(&mut options);
        let db = sled::Config::new().path(dir).open().unwrap();
        let store = AuditStore::open(&db, dir).unwrap();
        let signer = Arc::new(
            CheckpointSigner::make_and_open(dir, crate::audit::suite::Suite::International)
                .unwrap(),
        );
        let writer = AuditWriter::start(store.clone(), dir, signer, metrics, options).unwrap();
        (writer, store)
    }

    /// Makes sled refuse the applier's filing under `dir` while the flag is set.
    fn refuse_filing(dir: &Path) -> (Arc<AtomicBool>, crate::faults::Armed) {
        let failing = Arc::new(AtomicBool::new(true));
        let plan = failing.clone();
        let armed = crate::faults::arm(dir, move |point| {
            (point == "audit.apply" && plan.load(Ordering::SeqCst))
                .then_some(crate::faults::Fault::Fail)
        });
        (failing, armed)
    }

    /// With nothing on its way, a group is written at once, however long
    /// `group_wait` is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_writer_writes_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let (w, store) = writer(dir.path(), Duration::from_secs(30));
        let seq = tokio::time::timeout(Duration::from_secs(10), w.append(body(1)))
            .await
            .expect("written without waiting for group_wait")
            .unwrap();
        assert_eq!(seq, 1);
        assert_eq!(w.durable_seq(), 1);
        w.caught_up().await.unwrap();
        assert_eq!(w.applied_seq(), 1);
        assert_eq!(store.get(1).unwrap().unwrap().body, body(1));
        assert_eq!(store.last_checkpoint_seq().unwrap(), 0);
        // Closing signs a last checkpoint, files it, and stops the thread:
        // a later append is refused, never left waiting.
        w.close().await;
        assert_eq!(store.last_checkpoint_seq().unwrap(), 1);
        assert!(
            wal::segments(&dir.path().join(wal::DIR))
                .unwrap()
                .is_empty(),
            "sled holds it all: no segment is left to replay"
        );
        assert!(!w.is_healthy());
        let late = tokio::time::timeout(Duration::from_secs(10), w.append(body(2)))
            .await
            .expect("refused at once");
        assert!(matches!(*late.unwrap_err(), AuditError::WriterStopped));
    }

    /// A full group (`max_batch` events) is written at once, even with a
    /// request still on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_group_is_written_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = writer_with(dir.path(), |o| {
            o.max_batch = 1;
            o.group_wait = Duration::from_secs(30);
        });
        let _coming = w.in_flight();
        let seq = tokio::time::timeout(Duration::from_secs(10), w.append(body(1)))
            .await
            .expect("a full group waits for no one")
            .unwrap();
        assert_eq!(seq, 1);
        w.close().await;
    }

    /// Requests queued while a group is being written go into the next
    /// group together, at most `max_batch` events each.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_requests_share_groups_of_at_most_max_batch() {
        for (max_batch, groups) in [(512, 2), (2, 4)] {
            let dir = tempfile::tempdir().unwrap();
            let (w, _) = writer_with(dir.path(), |o| o.max_batch = max_batch);
            // The first group's write waits until the others are queued.
            let gate = Arc::new(AtomicBool::new(true));
            let reached = Arc::new(AtomicBool::new(false));
            let (held, seen) = (gate.clone(), reached.clone());
            let _armed = crate::faults::arm(dir.path(), move |point| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while point == "wal.write" && held.load(Ordering::SeqCst) {
                    seen.store(true, Ordering::SeqCst);
                    assert!(Instant::now() < deadline, "the gate was never opened");
                    std::thread::sleep(Duration::from_millis(5));
                }
                None
            });
            let w = Arc::new(w);
            let until = |what: &str, done: &dyn Fn() -> bool| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while !done() {
                    assert!(Instant::now() < deadline, "{what}");
                    std::thread::sleep(Duration::from_millis(5));
                }
            };
            let mut tasks = Vec::new();
            for n in 1..=6 {
                let w = w.clone();
                tasks.push(tokio::spawn(async move { w.append(body(n)).await }));
                if n == 1 {
                    until("the first group never reached its write", &|| {
                        reached.load(Ordering::SeqCst)
                    });
                }
            }
            until("the five never were queued", &|| {
                w.tx.max_capacity() - w.tx.capacity() == 5
            });
            gate.store(false, Ordering::SeqCst);
            let mut seqs = Vec::new();
            for t in tasks {
                seqs.push(t.await.unwrap().unwrap());
            }
            seqs.sort_unstable();
            assert_eq!(seqs, [1, 2, 3, 4, 5, 6]);
            assert_eq!(w.stats().events.load(Ordering::Relaxed), 6);
            assert_eq!(
                w.stats().batches.load(Ordering::Relaxed),
                groups,
                "max_batch {max_batch}: the first alone, then the five queued"
            );
            w.close().await;
        }
    }

    /// A checkpoint asked for closes the group at once, though a request
    /// is still on its way.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_asked_for_closes_the_group_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(writer(dir.path(), Duration::from_secs(30)).0);
        let _coming = w.in_flight();
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.append(body(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!first.is_finished(), "the group waits for the one coming");
        let covered = tokio::time::timeout(Duration::from_secs(10), w.checkpoint_now())
            .await
            .expect("the checkpoint waits for no one")
            .unwrap();
        assert_eq!(covered, 1);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        w.close().await;
    }

    /// A checkpoint every `checkpoint_every` events, one when asked for,
    /// and never a second one of the same head.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn checkpoints_come_every_checkpoint_every_events_and_once_per_head() {
        let dir = tempfile::tempdir().unwrap();
        let (w, store) = writer_with(dir.path(), |o| o.checkpoint_every = 3);
        let signed = || w.stats().checkpoints.load(Ordering::Relaxed);
        let mut after = Vec::new();
        for n in 1..=7 {
            w.append(body(n)).await.unwrap();
            after.push(signed());
        }
        assert_eq!(after, [0, 0, 1, 1, 1, 2, 2]);
        assert_eq!(w.checkpoint_now().await.unwrap(), 7);
        assert_eq!(signed(), 3);
        assert_eq!(
            w.checkpoint_now().await.unwrap(),
            7,
            "the head did not move"
        );
        assert_eq!(signed(), 3);
        w.caught_up().await.unwrap();
        assert_eq!(store.last_checkpoint_seq().unwrap(), 7);
        w.close().await;
        assert_eq!(signed(), 3, "closing signs none for a head already signed");
    }

    /// With `durability = "fdatasync"` each group is synced before it is
    /// answered, and the writer's statistics say so.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_syncing_writer_counts_a_sync_through_each_answered_group() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = writer_with(dir.path(), |o| o.durability = Durability::Fdatasync);
        for n in 1..=3 {
            let seq = w.append(body(n)).await.unwrap();
            assert_eq!(w.stats().synced_through.load(Ordering::Acquire), seq);
            // One per group, and one per segment ended (about each second).
            assert!(w.stats().syncs.load(Ordering::Relaxed) >= u64::from(n));
        }
        w.close().await;
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = writer(dir.path(), Duration::ZERO);
        w.append(body(1)).await.unwrap();
        assert_eq!(
            w.stats().syncs.load(Ordering::Relaxed),
            0,
            "durability = \"flush\""
        );
        assert_eq!(w.stats().synced_through.load(Ordering::Acquire), 0);
        w.close().await;
    }

    /// The metrics count groups of events (a checkpoint alone is not a
    /// group of events) and checkpoints.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_metrics_count_groups_of_events_and_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Arc::new(Metrics::new());
        let (w, _) = writer_counted(dir.path(), metrics.clone(), |_| {});
        w.append(body(1)).await.unwrap();
        w.append_many(vec![body(2), body(3)]).await.unwrap();
        w.checkpoint_now().await.unwrap();
        let text = metrics.encode();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_owned()
        };
        assert_eq!(value("tongban_audit_batch_events_count"), "2");
        assert_eq!(value("tongban_audit_batch_events_sum"), "3.0");
        assert_eq!(value("tongban_audit_flush_seconds_count"), "2");
        assert_eq!(value("tongban_audit_checkpoints_total"), "1");
        w.close().await;
    }

    /// A segment ends once it is about a second old (then the applier
    /// removes it once sled holds it); not before.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_segment_ends_after_about_a_second_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Instant::now();
        let (w, _) = writer(dir.path(), Duration::ZERO);
        let numbers = || -> Vec<u64> {
            wal::segments(&dir.path().join(wal::DIR))
                .unwrap()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        w.append(body(1)).await.unwrap();
        w.append(body(2)).await.unwrap();
        // (Only if this machine took less than a second to get here.)
        if opened.elapsed() < ROTATE_AGE {
            assert_eq!(numbers(), [1], "young and small: still the first");
        }
        tokio::time::sleep(ROTATE_AGE + Duration::from_millis(100)).await;
        w.append(body(3)).await.unwrap();
        // (The writer ends the segment right after answering.)
        let deadline = Instant::now() + Duration::from_secs(10);
        while numbers().last() != Some(&2) {
            assert!(Instant::now() < deadline, "the first never ended");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        w.close().await;
    }

    fn pending(bodies: &[u32], finalize: Option<Finalizer>) -> Pending {
        let events = bodies
            .iter()
            .map(|n| {
                let b = body(*n);
                (b.encode(), b)
            })
            .collect();
        (events, oneshot::channel().0, finalize)
    }

    /// Each signed answer's finalizer gets the numbers its own events will
    /// have, and its hash goes into those events only.
    #[test]
    fn a_finalizer_gets_its_own_events_numbers_and_marks_only_them() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let finalizer = |mark: u8| -> Option<Finalizer> {
            let seen = seen.clone();
            Some(Box::new(move |first, last| {
                seen.lock().unwrap().push((first, last));
                [mark; 32]
            }))
        };
        let mut batch = vec![
            pending(&[1, 2], None),
            pending(&[3, 4, 5], finalizer(7)),
            pending(&[], finalizer(8)),
            pending(&[6], finalizer(9)),
        ];
        finalize_proofs(&mut batch, 11);
        assert_eq!(
            *seen.lock().unwrap(),
            [(13, 15), (16, 16)],
            "none for no event"
        );
        let proofs: Vec<Vec<Option<Hash>>> = batch
            .iter()
            .map(|(events, _, _)| {
                events
                    .iter()
                    .map(|(encoded, body)| {
                        assert_eq!(encoded.proof, body.proof);
                        body.proof
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            proofs,
            [
                vec![None, None],
                vec![Some([7; 32]); 3],
                vec![],
                vec![Some([9; 32])]
            ]
        );
    }

    /// A reader waits for a checkpoint the writer signed, though it holds
    /// no event (the sequence number does not move): an export after it
    /// finds the checkpoint it was promised.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reader_waits_for_a_checkpoint_not_yet_filed() {
        let dir = tempfile::tempdir().unwrap();
        let (w, store) = writer(dir.path(), Duration::ZERO);
        assert_eq!(w.append(body(1)).await.unwrap(), 1);
        w.caught_up().await.unwrap();
        let (failing, _armed) = refuse_filing(dir.path());
        assert_eq!(w.checkpoint_now().await.unwrap(), 1);
        assert!(
            tokio::time::timeout(Duration::from_millis(500), w.caught_up())
                .await
                .is_err(),
            "the checkpoint is not filed yet: the reader waits"
        );
        failing.store(false, Ordering::SeqCst);
        w.caught_up().await.unwrap();
        assert_eq!(store.last_checkpoint_seq().unwrap(), 1);
        w.close().await;
    }

    /// sled refusing a durable group: the writer answers it (it is
    /// durable), then says it is unhealthy and refuses new groups until
    /// the applier has filed it; nothing durable is lost or filed twice.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_filing_stops_appends_until_the_applier_has_caught_up() {
        let dir = tempfile::tempdir().unwrap();
        let (w, store) = writer(dir.path(), Duration::ZERO);
        assert_eq!(w.append(body(1)).await.unwrap(), 1);
        w.caught_up().await.unwrap();
        let (failing, _armed) = refuse_filing(dir.path());
        assert_eq!(w.append(body(2)).await.unwrap(), 2, "durable, so answered");
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.is_healthy() {
            assert!(
                Instant::now() < deadline,
                "the writer never said it is behind"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(w.is_behind());
        assert_eq!(w.durable_seq(), 2);
        assert!(matches!(
            *w.append(body(3)).await.unwrap_err(),
            AuditError::Behind
        ));
        assert_eq!(w.applied_seq(), 1, "the refused group is not filed");
        failing.store(false, Ordering::SeqCst);
        while !w.is_healthy() {
            assert!(Instant::now() < deadline, "the applier never caught up");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(!w.is_behind());
        assert_eq!(
            w.append(body(4)).await.unwrap(),
            3,
            "the refused group took no number"
        );
        w.caught_up().await.unwrap();
        assert_eq!(w.applied_seq(), 3);
        assert_eq!(store.get(2).unwrap().unwrap().body, body(2));
        assert_eq!(store.get(3).unwrap().unwrap().body, body(4));
        assert!(store.indexes_consistent().unwrap());
        w.close().await;
    }

    /// A group waits for a request counted on its way, and takes its event
    /// when it comes: one group, one sync, for both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_waits_for_a_request_on_its_way_and_takes_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = Arc::new(writer(dir.path(), Duration::from_secs(30)).0);
        let coming = w.in_flight();
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.append(body(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !first.is_finished(),
            "the group waits for the request on its way"
        );
        let second = w.append_on_way(vec![body(2)], None, Some(&coming)).await;
        assert_eq!(second.unwrap(), 2);
        assert_eq!(first.await.unwrap().unwrap(), 1);
        assert_eq!(w.stats().batches.load(Ordering::Relaxed), 1, "one group");
        // Its events taken, it is no longer on its way: going away now
        // counts nothing twice, and the next group waits for no one.
        drop(coming);
        let third = tokio::time::timeout(Duration::from_secs(10), w.append(body(3)))
            .await
            .expect("no request is on its way any more")
            .unwrap();
        assert_eq!(third, 3);
        w.close().await;
    }

    /// While events arrive, a checkpoint is signed every
    /// `checkpoint_interval`, however few events came.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_checkpoint_is_signed_every_interval_while_events_arrive() {
        let dir = tempfile::tempdir().unwrap();
        let (w, store) = writer_with(dir.path(), |o| {
            o.checkpoint_interval = Duration::from_millis(100);
        });
        assert_eq!(w.append(body(1)).await.unwrap(), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while w.stats().checkpoints.load(Ordering::Relaxed) == 0 {
            assert!(Instant::now() < deadline, "no checkpoint was signed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        w.caught_up().await.unwrap();
        assert_eq!(store.last_checkpoint_seq().unwrap(), 1);
        w.close().await;
    }

    /// A request that never comes holds a group only `group_wait`; one
    /// that goes away without appending holds it no longer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_waits_at_most_group_wait_and_not_for_a_request_gone() {
        let dir = tempfile::tempdir().unwrap();
        let (w, _) = writer(dir.path(), Duration::from_millis(200));
        let never = w.in_flight();
        let seq = tokio::time::timeout(Duration::from_secs(10), w.append(body(1)))
            .await
            .expect("written once its oldest request waited group_wait")
            .unwrap();
        assert_eq!(seq, 1);
        drop(never);
        let w = Arc::new(writer(tempfile::tempdir().unwrap().path(), Duration::from_secs(30)).0);
        let gone = w.in_flight();
        let first = tokio::spawn({
            let w = w.clone();
            async move { w.append(body(1)).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!first.is_finished());
        drop(gone);
        let seq = tokio::time::timeout(Duration::from_secs(10), first)
            .await
            .expect("written once no request is on its way")
            .unwrap()
            .unwrap();
        assert_eq!(seq, 1);
        w.close().await;
    }
}
