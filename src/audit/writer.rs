//! The group-committing audit writer.
//!
//! One thread owns appends. Requests hand it an event body and wait; the
//! thread takes everything that is queued (up to `max_batch`), numbers and
//! chains the events, inserts them with their index entries, flushes sled once
//! and (by default) `fdatasync`s its log file once, then releases every waiting
//! request. Many requests share one flush; none is acknowledged before its
//! event is durable. If a write fails, every request of that group gets an
//! error (the caller answers 503 and sends no data) and the writer re-reads the
//! chain head from disk before the next group.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::event::{Event, EventBody, FORMAT_VERSION, Hash};
use super::store::{AuditError, AuditStore};
use crate::config::Durability;

type Ack = oneshot::Sender<Result<u64, Arc<AuditError>>>;

enum Msg {
    Append(Box<EventBody>, Ack),
    Stop,
}

/// Handle for appending events; cheap to share.
#[derive(Debug)]
pub struct AuditWriter {
    tx: mpsc::Sender<Msg>,
    healthy: Arc<AtomicBool>,
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
}

/// Where and how the writer appends.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// This node's id, written in every event.
    pub node: String,
    /// Whether to fdatasync after each flush.
    pub durability: Durability,
    /// Most events per group.
    pub max_batch: usize,
}

impl AuditWriter {
    /// Starts the writer thread on `store`; `data_dir` is the sled directory (its `db` file is synced).
    pub fn start(
        store: AuditStore,
        data_dir: &Path,
        options: WriterOptions,
    ) -> Result<Self, AuditError> {
        let sync_file = match options.durability {
            Durability::Fdatasync => Some(File::open(data_dir.join("db"))?),
            Durability::Flush => None,
        };
        let head = store.head()?;
        let (tx, rx) = mpsc::channel(options.max_batch.saturating_mul(8).max(64));
        let healthy = Arc::new(AtomicBool::new(true));
        let stats = Arc::new(WriterStats::default());
        let mut state = State {
            store,
            sync_file,
            head,
            options,
            healthy: healthy.clone(),
            stats: stats.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || state.run(rx))?;
        Ok(Self {
            tx,
            healthy,
            stats,
            thread: std::sync::Mutex::new(Some(thread)),
        })
    }

    /// Appends one event and waits until it is durable; returns its sequence number.
    pub async fn append(&self, body: EventBody) -> Result<u64, Arc<AuditError>> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Append(Box::new(body), ack))
            .await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?;
        done.await
            .map_err(|_| Arc::new(AuditError::WriterStopped))?
    }

    /// Whether the last group commit succeeded and the thread is running.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire) && !self.tx.is_closed()
    }

    /// Counters of the writer's work.
    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Writes what is queued, flushes, and stops the thread; later appends fail.
    pub async fn close(&self) {
        let handle = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            // The queue is bounded: waiting for room rather than dropping the stop.
            let _ = self.tx.send(Msg::Stop).await;
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

struct State {
    store: AuditStore,
    sync_file: Option<File>,
    head: (u64, Hash),
    options: WriterOptions,
    healthy: Arc<AtomicBool>,
    stats: Arc<WriterStats>,
}

impl State {
    fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut batch: Vec<(Box<EventBody>, Ack)> = Vec::with_capacity(self.options.max_batch);
        loop {
            let mut stop = false;
            match rx.blocking_recv() {
                None | Some(Msg::Stop) => stop = true,
                Some(Msg::Append(body, ack)) => batch.push((body, ack)),
            }
            while !stop && batch.len() < self.options.max_batch {
                match rx.try_recv() {
                    Ok(Msg::Append(body, ack)) => batch.push((body, ack)),
                    Ok(Msg::Stop) => stop = true,
                    Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if stop {
                rx.close();
                // Requests that raced the stop are refused, never silently dropped.
                while let Ok(msg) = rx.try_recv() {
                    if let Msg::Append(_, ack) = msg {
                        let _ = ack.send(Err(Arc::new(AuditError::WriterStopped)));
                    }
                }
                let _ = self.store.db().flush();
                self.healthy.store(false, Ordering::Release);
                return;
            }
        }
    }

    fn commit(&mut self, batch: &mut Vec<(Box<EventBody>, Ack)>) {
        let (mut seq, mut prev) = self.head;
        let mut sealed = Vec::with_capacity(batch.len());
        for (body, _) in batch.iter() {
            seq += 1;
            let resident = body.resident;
            let event = Event {
                version: FORMAT_VERSION,
                seq,
                node: self.options.node.clone(),
                prev_hash: prev,
                body: (**body).clone(),
            };
            let (stored, hash) = event.seal();
            prev = hash;
            sealed.push((seq, stored, resident));
        }
        let first = self.head.0 + 1;
        let started = Instant::now();
        let result = self
            .store
            .append(&sealed)
            .and_then(|()| self.make_durable());
        match result {
            Ok(()) => {
                self.head = (seq, prev);
                self.healthy.store(true, Ordering::Release);
                self.stats.batches.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .events
                    .fetch_add(sealed.len() as u64, Ordering::Relaxed);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                self.stats.flush_micros.fetch_add(micros, Ordering::Relaxed);
                for (i, (_, ack)) in batch.drain(..).enumerate() {
                    let _ = ack.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, events = batch.len(), "audit group commit failed: refusing these requests");
                self.healthy.store(false, Ordering::Release);
                let e = Arc::new(e);
                for (_, ack) in batch.drain(..) {
                    let _ = ack.send(Err(e.clone()));
                }
                // Part of the group may have reached sled: continue from what is there.
                if let Ok(head) = self.store.head() {
                    self.head = head;
                }
            }
        }
    }

    fn make_durable(&self) -> Result<(), AuditError> {
        self.store.db().flush()?;
        if let Some(file) = &self.sync_file {
            file.sync_data()?;
        }
        Ok(())
    }
}
