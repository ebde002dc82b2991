//! Verifying the hash chain: pure, over stored (key, value) pairs in key order.
//!
//! Catches an altered event (its bytes no longer match its hash), a deleted
//! one (a gap in sequence numbers, and a broken link), an inserted or
//! reordered one (a broken link), and a moved one (key and content disagree).

use serde::Serialize;

use super::checkpoint::{Keyring, SignedCheckpoint};
use super::event::{Event, GENESIS, Hash, suite_of};
use super::suite::Suite;
use crate::domain::hex;

/// The first place where the chain does not hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// Sequence number (store key) of the first event that fails.
    pub seq: u64,
    /// What is wrong there.
    pub problem: String,
}

/// The result of walking a chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The anchor the walk started after (0 for genesis; the last pruned event otherwise).
    pub anchor_seq: u64,
    /// Events checked before the walk ended.
    pub checked: u64,
    /// Signed checkpoints checked.
    pub checkpoints_checked: u64,
    /// The last checkpoint that verified, if any.
    pub last_checkpoint: Option<u64>,
    /// The last good event's sequence number.
    pub head_seq: u64,
    /// The last good event's hash, hex.
    pub head_hash: String,
    /// The first broken link, if any.
    pub broken: Option<BrokenLink>,
    /// The runs of events of one suite, in order (a change of suite starts
    /// a new epoch).
    pub epochs: Vec<Epoch>,
}

/// A run of events hashed and signed with one suite.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Epoch {
    /// `international` or `gm`.
    pub suite: String,
    /// Its first event checked.
    pub first_seq: u64,
    /// Its last event checked.
    pub last_seq: u64,
}

impl VerifyReport {
    /// Whether the whole chain verified.
    pub fn ok(&self) -> bool {
        self.broken.is_none()
    }
}

/// Walks a chain event by event.
#[derive(Debug)]
pub struct ChainVerifier {
    anchor: u64,
    next_seq: u64,
    prev: Hash,
    checked: u64,
    checkpoints_checked: u64,
    last_checkpoint: Option<u64>,
    suite: Option<Suite>,
    /// The node of the last event checked.
    node: String,
    epochs: Vec<Epoch>,
    /// The last checkpoint that changed suite: (its seq, the new suite).
    handover: Option<(u64, Option<Suite>)>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::from_anchor(0, GENESIS)
    }
}

impl ChainVerifier {
    /// Starts after an anchor: the event `seq` with hash `hash` is taken as good.
    pub fn from_anchor(seq: u64, hash: Hash) -> Self {
        Self {
            anchor: seq,
            next_seq: seq + 1,
            prev: hash,
            checked: 0,
            checkpoints_checked: 0,
            last_checkpoint: None,
            suite: None,
            node: String::new(),
            epochs: Vec::new(),
            handover: None,
        }
    }

    /// Checks the next stored event, found under `key_seq`.
    pub fn check(&mut self, key_seq: u64, stored: &[u8]) -> Result<(), BrokenLink> {
        let broken = |problem: String| BrokenLink {
            seq: key_seq,
            problem,
        };
        let (event, recorded, recomputed) =
            Event::open(stored).map_err(|e| broken(e.to_string()))?;
        if recorded != recomputed {
            return Err(broken(format!(
                "the event's content does not match its hash (altered): recorded {}, computed {}",
                hex(&recorded),
                hex(&recomputed)
            )));
        }
        if event.seq != key_seq {
            return Err(broken(format!(
                "stored under sequence number {key_seq} but records {} (moved)",
                event.seq
            )));
        }
        if key_seq > self.next_seq {
            return Err(broken(format!(
                "events {} to {} are missing (deleted)",
                self.next_seq,
                key_seq - 1
            )));
        }
        if key_seq < self.next_seq {
            return Err(broken(format!(
                "sequence number {key_seq} is out of order after {}",
                self.next_seq - 1
            )));
        }
        if event.prev_hash != self.prev {
            return Err(broken(format!(
                "does not link to the event before (deleted, inserted or reordered): prev_hash {}, expected {}",
                hex(&event.prev_hash),
                hex(&self.prev)
            )));
        }
        let suite = suite_of(event.version);
        if let Some(before) = self.suite
            && before != suite
            && self.handover != Some((key_seq - 1, Some(suite)))
        {
            return Err(broken(format!(
                "the suite changes from {before} to {suite} here without a checkpoint at {} signed by both keys",
                key_seq - 1
            )));
        }
        match self.epochs.last_mut() {
            Some(e) if self.suite == Some(suite) => e.last_seq = key_seq,
            _ => self.epochs.push(Epoch {
                suite: suite.name().to_owned(),
                first_seq: key_seq,
                last_seq: key_seq,
            }),
        }
        self.suite = Some(suite);
        self.node = event.node;
        self.prev = recorded;
        self.next_seq += 1;
        self.checked += 1;
        Ok(())
    }

    /// The report so far, with `broken` if the walk stopped on one.
    pub fn report(&self, broken: Option<BrokenLink>) -> VerifyReport {
        VerifyReport {
            anchor_seq: self.anchor,
            checked: self.checked,
            checkpoints_checked: self.checkpoints_checked,
            last_checkpoint: self.last_checkpoint,
            head_seq: self.next_seq - 1,
            head_hash: hex(&self.prev),
            broken,
            epochs: self.epochs.clone(),
        }
    }

    /// Checks a signed checkpoint against the event just checked (its seq
    /// must be the last one): the hash it attests, its suite against the
    /// event's, and (with `keys`) its signatures.
    pub fn check_checkpoint(
        &mut self,
        cp: &SignedCheckpoint,
        keys: Option<&Keyring>,
    ) -> Result<(), BrokenLink> {
        let seq = cp.checkpoint.seq;
        let broken = |problem: String| BrokenLink { seq, problem };
        if cp.checkpoint.head_hash != self.prev {
            return Err(broken(format!(
                "the signed checkpoint at {seq} attests hash {}, but the event has {} (altered after signing)",
                hex(&cp.checkpoint.head_hash),
                hex(&self.prev)
            )));
        }
        let c = &cp.checkpoint;
        if c.node != self.node {
            return Err(broken(format!(
                "the checkpoint at {seq} is signed for node {}, but the event is node {}'s",
                c.node, self.node
            )));
        }
        // No suite yet (no event checked): names none, so the check below fails.
        let covered = self.suite.map(Suite::name).unwrap_or_default();
        let signed_in = c
            .previous
            .as_ref()
            .map_or(c.suite.as_str(), |p| p.suite.as_str());
        if signed_in != covered {
            return Err(broken(format!(
                "the checkpoint at {seq} is of suite {signed_in}, but the event it covers is {covered}"
            )));
        }
        if let Some(keys) = keys {
            cp.check(keys).map_err(|e| broken(e.to_string()))?;
        }
        if c.previous.is_some() {
            self.handover = Some((seq, c.suite()));
        }
        self.checkpoints_checked += 1;
        self.last_checkpoint = Some(seq);
        Ok(())
    }

    /// The last sequence number checked.
    pub fn head(&self) -> u64 {
        self.next_seq - 1
    }
}

/// Verifies a chain after `anchor` and the signed checkpoints over it.
/// Checkpoints are checked where their event is reached; a checkpoint beyond
/// the last event means events were removed from the end.
pub fn verify_log<I, E>(
    anchor: (u64, Hash),
    events: I,
    checkpoints: &[SignedCheckpoint],
    keys: Option<&Keyring>,
) -> Result<VerifyReport, E>
where
    I: IntoIterator<Item = Result<(u64, Vec<u8>), E>>,
{
    let mut v = ChainVerifier::from_anchor(anchor.0, anchor.1);
    let mut cps = checkpoints
        .iter()
        .filter(|c| c.checkpoint.seq > anchor.0)
        .peekable();
    for item in events {
        let (seq, stored) = item?;
        if let Err(b) = v.check(seq, &stored) {
            return Ok(v.report(Some(b)));
        }
        while let Some(cp) = cps.next_if(|c| c.checkpoint.seq <= seq) {
            if cp.checkpoint.seq < seq {
                continue;
            }
            if let Err(b) = v.check_checkpoint(cp, keys) {
                return Ok(v.report(Some(b)));
            }
        }
    }
    if let Some(cp) = cps.next() {
        let broken = BrokenLink {
            seq: v.head() + 1,
            problem: format!(
                "a signed checkpoint covers event {} but the log ends at {} (events removed from the end)",
                cp.checkpoint.seq,
                v.head()
            ),
        };
        return Ok(v.report(Some(broken)));
    }
    Ok(v.report(None))
}

/// Verifies a whole chain from genesis, without checkpoints.
pub fn verify<I, E>(events: I) -> Result<VerifyReport, E>
where
    I: IntoIterator<Item = Result<(u64, Vec<u8>), E>>,
{
    verify_log((0, GENESIS), events, &[], None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::event::FORMAT_VERSION;
    use crate::audit::event::tests::body;
    use proptest::prelude::*;

    fn chain(n: u32) -> Vec<(u64, Vec<u8>)> {
        let mut prev = GENESIS;
        (1..=n)
            .map(|i| {
                let e = Event {
                    version: FORMAT_VERSION,
                    seq: u64::from(i),
                    node: "n".into(),
                    prev_hash: prev,
                    body: body(i),
                };
                let (stored, hash) = e.seal();
                prev = hash;
                (u64::from(i), stored)
            })
            .collect()
    }

    fn run(c: Vec<(u64, Vec<u8>)>) -> VerifyReport {
        verify(c.into_iter().map(Ok::<_, ()>)).unwrap()
    }

    #[test]
    fn an_intact_chain_verifies() {
        let r = run(chain(5));
        assert!(r.ok(), "{r:?}");
        assert_eq!((r.checked, r.head_seq), (5, 5));
    }

    #[test]
    fn deletion_and_reordering_are_found() {
        let mut c = chain(5);
        c.remove(2);
        let r = run(c);
        let broken = r.broken.unwrap();
        assert_eq!(broken.seq, 4);
        // The officer is told what happened, not only where.
        assert_eq!(broken.problem, "events 3 to 3 are missing (deleted)");

        let mut c = chain(5);
        c.swap(1, 2);
        let r = run(c);
        let broken = r.broken.as_ref().unwrap();
        assert_eq!(broken.seq, 3, "{r:?}");
        assert_eq!(broken.problem, "events 2 to 2 are missing (deleted)");

        // An event presented twice (a copy replayed) is out of order.
        let mut c = chain(3);
        let again = c[1].clone();
        c.insert(2, again);
        let r = run(c);
        let broken = r.broken.unwrap();
        assert_eq!(broken.seq, 2);
        assert_eq!(broken.problem, "sequence number 2 is out of order after 2");
    }

    #[test]
    fn a_rehashed_alteration_breaks_the_next_link() {
        let mut c = chain(4);
        let (mut e, _, _) = Event::open(&c[1].1).unwrap();
        e.body.fields.push("ethnicity".into());
        c[1].1 = e.seal().0;
        let r = run(c);
        let b = r.broken.unwrap();
        assert_eq!(b.seq, 3);
        assert!(b.problem.contains("does not link"));
    }

    /// Each event's hash covers the hash of the one before: an edit of
    /// event 2, resealed, with only event 3's link patched to it (its own
    /// recorded hash left as it was, so event 4 still links), breaks at 3.
    #[test]
    fn a_patched_link_after_a_resealed_edit_breaks_where_it_was_patched() {
        let mut c = chain(4);
        let (mut second, _, _) = Event::open(&c[1].1).unwrap();
        second.body.fields.push("ethnicity".into());
        let (stored, resealed) = second.seal();
        c[1].1 = stored;
        let (mut third, recorded, _) = Event::open(&c[2].1).unwrap();
        assert_ne!(third.prev_hash, GENESIS, "a link to a real event");
        third.prev_hash = resealed;
        let mut patched = third.canonical();
        patched.extend_from_slice(&recorded);
        c[2].1 = patched;
        let r = run(c);
        let b = r.broken.unwrap();
        assert_eq!(b.seq, 3, "{b:?}");
        assert!(b.problem.contains("altered"), "{b:?}");
    }

    /// The hash of an event with a previous hash other than genesis, known
    /// in advance: a change in what is hashed (the previous hash left out,
    /// say) changes it.
    #[test]
    fn an_event_after_the_first_hashes_to_its_known_answer() {
        let e = Event {
            version: FORMAT_VERSION,
            seq: 2,
            node: "n".into(),
            prev_hash: [0xAB; 32],
            body: body(2),
        };
        assert_eq!(
            hex(&e.seal().1),
            "b4a43af468c79f1122993bdd6aade94a3a3be9e1197d3470030aa17bd4838caa",
        );
    }

    proptest! {
        /// Any single changed byte in any stored event is detected.
        #[test]
        fn any_single_byte_change_is_detected(which in 0usize..6, pos in any::<prop::sample::Index>(), flip in 1u8..=255) {
            let mut c = chain(6);
            let value = &mut c[which].1;
            let i = pos.index(value.len());
            value[i] ^= flip;
            let r = run(c);
            prop_assert!(r.broken.is_some());
            prop_assert_eq!(r.broken.unwrap().seq, which as u64 + 1);
        }
    }
}
