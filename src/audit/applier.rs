//! The applier: files durable audit groups in sled, behind the writer.
//!
//! A group is durable, and its requests are answered, once its record is
//! synced in the write-ahead file ([`super::wal`]); sled is not on that
//! path. This thread owns the rest: it takes the writer's groups in order
//! (several at a time when they queue), inserts their event chunks, block
//! summaries and checkpoints into sled and their residents into the
//! resident index, then advances the applied sequence number and group
//! count ([`Progress`]). Officers' reads wait until it has filed every group
//! durable at their start ([`Progress::reach`]), checkpoint-only groups
//! included, so a search never misses an acknowledged event or a signed
//! checkpoint. Write-ahead segments are removed only behind it:
//! once it has applied an ended segment's records, a thread of its own
//! flushes sled, syncs its file and removes the segment.
//!
//! If sled refuses a batch, the applier says it is behind: the gateway turns
//! unready and the writer takes no new groups (their requests are answered
//! 503). It keeps the batch and tries again every second; once it has
//! applied everything durable, appends resume. Whatever was durable and not
//! applied when the process stopped, the next start replays from the
//! write-ahead file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::thread::JoinHandle;
use std::time::Duration;

use super::blocks::{BlockSummary, block_of};
use super::checkpoint::SignedCheckpoint;
use super::event::EventBody;
use super::store::{AuditError, AuditStore, SealedEvent, sync_db_file};
use super::wal;

/// How often a refused batch is tried again.
const RETRY: Duration = Duration::from_secs(1);
/// Most groups filed in one batch, and most waiting for the applier: a
/// writer ahead by more waits (sled slower than the write-ahead file holds
/// the commit path back rather than memory growing without bound).
const MAX_GROUPS: usize = 256;

/// A durable group, for the applier.
#[derive(Debug)]
pub(crate) struct Group {
    /// Its events: sequence number, stored bytes, resident pseudonym.
    pub events: Vec<SealedEvent>,
    /// Their bodies, in the same order (for the block summaries).
    pub bodies: Vec<EventBody>,
    /// The checkpoint signed with it, if one was.
    pub checkpoint: Option<Box<SignedCheckpoint>>,
    /// The highest sequence number it covers.
    pub through: u64,
    /// Its number among the writer's durable groups (from 1 in each run).
    pub number: u64,
}

/// What the writer hands the applier, in order.
#[derive(Debug)]
pub(crate) enum Work {
    /// A durable group.
    Group(Group),
    /// Every group of this write-ahead segment has been handed over.
    SegmentEnded(u64),
    /// The writer has stopped; `segment` is the last one it wrote.
    Stop {
        /// The writer's last segment.
        segment: u64,
    },
}

/// How far the applier got, for the writer, readiness and readers.
#[derive(Debug)]
pub struct Progress {
    /// The highest sequence number filed, and how many of this run's
    /// durable groups are filed (a group may hold only a checkpoint).
    applied: tokio::sync::watch::Sender<(u64, u64)>,
    behind: AtomicBool,
}

impl Progress {
    fn new(applied: u64) -> Self {
        Self {
            applied: tokio::sync::watch::Sender::new((applied, 0)),
            behind: AtomicBool::new(false),
        }
    }

    /// The highest sequence number filed in sled (with everything before it).
    pub fn applied(&self) -> u64 {
        self.applied.borrow().0
    }

    /// Whether sled refused a batch the applier has not yet filed.
    pub fn is_behind(&self) -> bool {
        self.behind.load(Ordering::Acquire)
    }

    /// Waits until the first `groups` durable groups of this run are
    /// filed, at most `within`.
    pub async fn reach(&self, groups: u64, within: Duration) -> Result<(), AuditError> {
        let mut rx = self.applied.subscribe();
        match tokio::time::timeout(within, rx.wait_for(|a| a.1 >= groups)).await {
            Ok(Ok(_)) => Ok(()),
            _ => Err(AuditError::Behind),
        }
    }
}

/// The writer's handle on the applier thread.
#[derive(Debug)]
pub(crate) struct Applier {
    tx: SyncSender<Work>,
    thread: Option<JoinHandle<()>>,
    progress: Arc<Progress>,
}

impl Applier {
    /// Starts the thread on `store`, whose events are filed through `head`.
    pub(crate) fn start(
        store: AuditStore,
        data_dir: &Path,
        sync: bool,
        head: u64,
    ) -> Result<Self, AuditError> {
        let block = block_of(head + 1);
        // Opening the store summarized every block up to the head, so none
        // here means the head ends a block and the next event starts one.
        let summary = store.block(block)?.unwrap_or_default();
        let progress = Arc::new(Progress::new(head));
        let (retire, retired) = std::sync::mpsc::channel();
        let retirer = {
            let (db, data_dir) = (store.db().clone(), data_dir.to_owned());
            std::thread::Builder::new()
                .name("audit-wal-retire".into())
                .spawn(move || retire_segments(&db, &data_dir, sync, &retired))?
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(MAX_GROUPS);
        let state = State {
            store,
            data_dir: data_dir.to_owned(),
            sync,
            block: (block, summary),
            progress: progress.clone(),
            retire: Some((retire, retirer)),
            ended: None,
            pending: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("audit-applier".into())
            .spawn(move || state.run(&rx))?;
        Ok(Self {
            tx,
            thread: Some(thread),
            progress,
        })
    }

    /// How far it got.
    pub(crate) fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Hands over work (waits while its queue is full).
    pub(crate) fn send(&self, work: Work) {
        if self.tx.send(work).is_err() {
            tracing::error!(
                "the audit applier has stopped: the next start replays the write-ahead file"
            );
            self.progress.behind.store(true, Ordering::Release);
        }
    }

    /// Tries once more to file what is pending; then, unless something is
    /// still not filed, flushes sled and removes the write-ahead segments
    /// through `segment`; and stops.
    pub(crate) fn stop(&mut self, segment: u64) {
        self.send(Work::Stop { segment });
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

struct State {
    store: AuditStore,
    data_dir: PathBuf,
    sync: bool,
    /// The block the next event falls in, and its summary so far.
    block: (u64, BlockSummary),
    progress: Arc<Progress>,
    /// Ended segments go to the thread that flushes sled and removes them.
    retire: Option<(std::sync::mpsc::Sender<u64>, JoinHandle<()>)>,
    /// The last ended segment not yet handed to it.
    ended: Option<u64>,
    /// Durable groups not yet filed.
    pending: Vec<Group>,
}

impl State {
    fn run(mut self, rx: &Receiver<Work>) {
        let segment = loop {
            // Wait for work; while behind, at most a retry's interval.
            let first = if self.pending.is_empty() {
                rx.recv().ok()
            } else {
                match rx.recv_timeout(RETRY) {
                    Ok(w) => Some(w),
                    Err(RecvTimeoutError::Timeout) => {
                        self.file();
                        self.retire_if_caught_up();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                }
            };
            let mut next = first;
            let mut stop = None;
            if next.is_none() {
                // The writer is gone without a stop: keep every segment.
                break None;
            }
            while let Some(work) = next.take().or_else(|| rx.try_recv().ok()) {
                match work {
                    Work::Group(g) => {
                        self.pending.push(g);
                        // (While behind, the retry's interval decides.)
                        if self.pending.len() >= MAX_GROUPS && !self.progress.is_behind() {
                            self.file();
                        }
                    }
                    Work::SegmentEnded(n) => {
                        self.file();
                        self.ended = Some(n);
                    }
                    Work::Stop { segment } => {
                        stop = Some(segment);
                        break;
                    }
                }
            }
            self.file();
            self.retire_if_caught_up();
            if let Some(segment) = stop {
                break Some(segment);
            }
        };
        self.finish(segment);
    }

    /// Files the pending groups in one batch of inserts.
    fn file(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mut block = self.block.clone();
        let mut summaries = Vec::new();
        let mut entries = Vec::new();
        let mut through = 0;
        let mut number = 0;
        let mut events = false;
        for g in &self.pending {
            entries.extend(AuditStore::entries(&g.events, &[], g.checkpoint.as_deref()));
            for ((seq, _, _), body) in g.events.iter().zip(&g.bodies) {
                if block_of(*seq) != block.0 {
                    summaries.push(std::mem::replace(
                        &mut block,
                        (block_of(*seq), BlockSummary::default()),
                    ));
                }
                block.1.add(*seq, body);
                events = true;
            }
            through = through.max(g.through);
            number = number.max(g.number);
        }
        if events {
            summaries.push(block.clone());
        }
        // Summaries after their events: a stop in between leaves events a
        // start summarizes again.
        entries.extend(AuditStore::entries(&[], &summaries, None));
        let result = crate::faults::point(&self.data_dir, "audit.apply")
            .map_err(AuditError::from)
            .and_then(|()| self.store.apply(entries));
        match result {
            Ok(()) => {
                self.block = block;
                for g in self.pending.drain(..) {
                    self.store.index_committed(&g.events);
                }
                self.progress.applied.send_replace((through, number));
                if self.progress.behind.swap(false, Ordering::AcqRel) {
                    tracing::warn!(
                        through,
                        "the audit store has caught up with the write-ahead file: taking events again"
                    );
                }
            }
            Err(e) => {
                if !self.progress.behind.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, "sled refused durable audit events: taking no new events until they are filed (trying again every second; a restart replays them)");
                }
            }
        }
    }

    /// Hands the last ended segment to the retiring thread once every group
    /// before it is filed.
    fn retire_if_caught_up(&mut self) {
        if !self.pending.is_empty() {
            return;
        }
        if let (Some(n), Some((tx, _))) = (self.ended.take(), &self.retire) {
            let _ = tx.send(n);
        }
    }

    /// At a stop: flushes sled and removes every segment through the
    /// writer's last (sled then holds them all), unless something durable
    /// is not filed: then the segments are what the next start replays.
    fn finish(&mut self, segment: Option<u64>) {
        if let Some((tx, thread)) = self.retire.take() {
            drop(tx);
            let _ = thread.join();
        }
        let Some(segment) = segment else {
            return;
        };
        if !self.pending.is_empty() {
            return;
        }
        let done = self
            .store
            .db()
            .flush()
            .map_err(AuditError::from)
            .and_then(|_| {
                if self.sync {
                    sync_db_file(&self.data_dir)
                } else {
                    Ok(())
                }
            })
            .and_then(|()| {
                Ok(wal::remove_through(
                    &self.data_dir.join(wal::DIR),
                    segment,
                    false,
                )?)
            });
        if let Err(e) = done {
            tracing::error!(error = %e, "flushing the audit store at stop failed: the next start replays the write-ahead file");
        }
    }
}

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
