//! The audit event and its canonical encoding.
//!
//! An event says who (department, subject, roles, certificate fingerprint,
//! source address), what (operation, dataset, resident pseudonym, the *names*
//! of the fields returned), why (purpose, case reference), the decision and
//! the grant that made it, the outcome and timing. Field values are never part
//! of an event.
//!
//! The stored form is the postcard encoding of [`Event`] (a compact, specified,
//! deterministic binary format) followed by the 32-byte hash of those bytes:
//! SHA-256, or SM3 for events of the `gm` suite. The first byte (the format
//! version) says which, so the bytes describe themselves. The bytes include
//! `prev_hash`, which chains each event to the one before.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// The format version written in every event of the `international` suite.
/// Version 2 added `proof`; version 1 events (written before) are read as
/// they were.
pub const FORMAT_VERSION: u8 = 2;

/// The format version of `gm` events: version 2's layout, hashed with SM3.
pub const FORMAT_VERSION_GM: u8 = 3;

/// The format version an event of `suite` is written with.
pub fn format_version(suite: crate::audit::suite::Suite) -> u8 {
    match suite {
        crate::audit::suite::Suite::International => FORMAT_VERSION,
        crate::audit::suite::Suite::Gm => FORMAT_VERSION_GM,
    }
}

/// The suite of an event written with `version`.
pub fn suite_of(version: u8) -> crate::audit::suite::Suite {
    if version == FORMAT_VERSION_GM {
        crate::audit::suite::Suite::Gm
    } else {
        crate::audit::suite::Suite::International
    }
}

pub use super::suite::{Hash, sha256};

/// The all-zero hash that the first event of a chain points back to.
pub const GENESIS: Hash = [0; 32];

/// What an event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A department system's query for resident data (or the catalog).
    Query,
    /// A privacy officer's use of the audit routes.
    AuditReview,
    /// An administrator's change or reading of policies.
    PolicyAdmin,
    /// Anything else that reached the gateway (unknown routes, health checks are not audited).
    Other,
}

/// The decision recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Allowed (data may have left, see `fields`).
    Allow,
    /// Refused: authentication, policy, rate limit or bad input.
    Deny,
    /// Failed inside the gateway or a provider.
    Error,
}

impl EventKind {
    /// The name used in the API, in filters and in the central copy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::AuditReview => "audit_review",
            Self::PolicyAdmin => "policy_admin",
            Self::Other => "other",
        }
    }

    /// The kind of its name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Query,
            Self::AuditReview,
            Self::PolicyAdmin,
            Self::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl Outcome {
    /// The name used in the API and in filters.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Error => "error",
        }
    }
}

/// Text an event shares with what it names (a department, a grant, a
/// field, the policy version): a copy is a reference count. Encoded as a
/// string, like any other.
pub type Text = std::sync::Arc<str>;

/// What a request fills in; the writer adds sequence number, node and chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventBody {
    /// When the request arrived, milliseconds since the Unix epoch (UTC).
    pub time_ms: i64,
    /// The request id returned to the caller in `X-Request-Id`.
    pub request_id: String,
    /// What kind of request.
    pub kind: EventKind,
    /// The operation (`lookup`, `catalog`, …): a name of the gateway's own,
    /// borrowed for the requests it answers.
    pub operation: Cow<'static, str>,
    /// The caller's department, once authenticated.
    pub dept: Option<Text>,
    /// The caller's subject, once authenticated.
    pub subject: Option<Text>,
    /// The caller's roles, once authenticated.
    pub roles: Vec<Text>,
    /// SHA-256 fingerprint of the verified client certificate, if any.
    pub cert_fingerprint: Option<Hash>,
    /// The peer address.
    pub source: Text,
    /// The dataset asked for.
    pub dataset: Option<Text>,
    /// The resident, as a keyed pseudonym (never the ID itself).
    pub resident: Option<[u8; 16]>,
    /// The stated purpose.
    pub purpose: Option<Text>,
    /// The stated case reference.
    pub case_ref: Option<String>,
    /// Names of the fields that left the gateway (empty unless data left).
    pub fields: Vec<Text>,
    /// The decision.
    pub outcome: Outcome,
    /// The problem type slug for refusals and failures.
    pub reason: Option<Cow<'static, str>>,
    /// The grant that decided, with its version.
    pub grant: Option<(Text, u32)>,
    /// The policy set version in force.
    pub policy_version: Option<Text>,
    /// The HTTP status answered.
    pub status: u16,
    /// Time from arrival to decision, microseconds.
    pub latency_us: u32,
    /// For audit reviews and policy changes: what was searched or changed
    /// (filters, grant ids; never a resident ID or a field value).
    pub detail: Option<String>,
    /// SHA-256 of the signed answer (proof) issued with this disclosure, if one was.
    pub proof: Option<Hash>,
}

/// [`EventBody`] as format version 1 wrote it (no `proof`).
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EventBodyV1 {
    time_ms: i64,
    request_id: String,
    kind: EventKind,
    operation: String,
    dept: Option<Text>,
    subject: Option<Text>,
    roles: Vec<Text>,
    cert_fingerprint: Option<Hash>,
    source: Text,
    dataset: Option<Text>,
    resident: Option<[u8; 16]>,
    purpose: Option<Text>,
    case_ref: Option<String>,
    fields: Vec<Text>,
    outcome: Outcome,
    reason: Option<String>,
    grant: Option<(Text, u32)>,
    policy_version: Option<Text>,
    status: u16,
    latency_us: u32,
    detail: Option<String>,
}

/// [`Event`] as format version 1 wrote it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct EventV1 {
    version: u8,
    seq: u64,
    node: String,
    prev_hash: Hash,
    body: EventBodyV1,
}

impl From<EventV1> for Event {
    fn from(e: EventV1) -> Self {
        let b = e.body;
        Self {
            version: e.version,
            seq: e.seq,
            node: e.node,
            prev_hash: e.prev_hash,
            body: EventBody {
                time_ms: b.time_ms,
                request_id: b.request_id,
                kind: b.kind,
                operation: b.operation.into(),
                dept: b.dept,
                subject: b.subject,
                roles: b.roles,
                cert_fingerprint: b.cert_fingerprint,
                source: b.source,
                dataset: b.dataset,
                resident: b.resident,
                purpose: b.purpose,
                case_ref: b.case_ref,
                fields: b.fields,
                outcome: b.outcome,
                reason: b.reason.map(Cow::Owned),
                grant: b.grant,
                policy_version: b.policy_version,
                status: b.status,
                latency_us: b.latency_us,
                detail: b.detail,
                proof: None,
            },
        }
    }
}

/// An event body encoded by the request that made it (off the writer's
/// thread): its part of the event's canonical bytes, less its last member,
/// `proof`, which the writer may still set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedBody {
    bytes: Vec<u8>,
    /// The proof to record (the body's last member).
    pub proof: Option<Hash>,
}

impl EventBody {
    /// Its canonical encoding, for the writer to frame.
    pub fn encode(&self) -> EncodedBody {
        let mut bytes = Vec::with_capacity(self.encoded_len_bound());
        self.write_members(&mut bytes);
        EncodedBody {
            bytes,
            proof: self.proof,
        }
    }

    /// Postcard's encoding of every member but the last, `proof`, written
    /// member by member: the bytes serde's derived encoding gives (a
    /// property test checks it for any body), without its per-member
    /// dispatch. Postcard writes integers as varints (signed ones zigzagged),
    /// text as its length and bytes, an option as 0 or 1 and the value, a
    /// sequence as its length and items, a unit variant as its index, and
    /// byte arrays as their bytes.
    fn write_members(&self, out: &mut Vec<u8>) {
        fn varint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        fn text(out: &mut Vec<u8>, s: &str) {
            varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        fn maybe<T: ?Sized>(
            out: &mut Vec<u8>,
            v: Option<&T>,
            write: impl FnOnce(&mut Vec<u8>, &T),
        ) {
            match v {
                None => out.push(0),
                Some(v) => {
                    out.push(1);
                    write(out, v);
                }
            }
        }
        fn texts(out: &mut Vec<u8>, all: &[Text]) {
            varint(out, all.len() as u64);
            for s in all {
                text(out, s);
            }
        }
        let zigzag = ((self.time_ms << 1) ^ (self.time_ms >> 63)) as u64;
        varint(out, zigzag);
        text(out, &self.request_id);
        varint(out, self.kind as u64);
        text(out, &self.operation);
        maybe(out, self.dept.as_deref(), text);
        maybe(out, self.subject.as_deref(), text);
        texts(out, &self.roles);
        maybe(out, self.cert_fingerprint.as_ref(), |out, h| {
            out.extend_from_slice(h);
        });
        text(out, &self.source);
        maybe(out, self.dataset.as_deref(), text);
        maybe(out, self.resident.as_ref(), |out, r| {
            out.extend_from_slice(r);
        });
        maybe(out, self.purpose.as_deref(), text);
        maybe(out, self.case_ref.as_deref(), text);
        texts(out, &self.fields);
        varint(out, self.outcome as u64);
        maybe(out, self.reason.as_deref(), text);
        maybe(out, self.grant.as_ref(), |out, (g, v)| {
            text(out, g);
            varint(out, u64::from(*v));
        });
        maybe(out, self.policy_version.as_deref(), text);
        varint(out, u64::from(self.status));
        varint(out, u64::from(self.latency_us));
        maybe(out, self.detail.as_deref(), text);
    }

    /// At least the length of its encoding, so that encoding it takes one
    /// allocation: each text with a length of up to 10 bytes, and 96 bytes
    /// for the rest (time, kind, fingerprint, resident, numbers, tags).
    fn encoded_len_bound(&self) -> usize {
        let text = |s: &str| s.len() + 10;
        let opt = |s: &Option<Text>| s.as_deref().map_or(1, |s| 1 + text(s));
        let all = |v: &[Text]| v.iter().map(|s| text(s)).sum::<usize>() + 10;
        96 + text(&self.request_id)
            + text(&self.operation)
            + opt(&self.dept)
            + opt(&self.subject)
            + all(&self.roles)
            + text(&self.source)
            + opt(&self.dataset)
            + opt(&self.purpose)
            + self.case_ref.as_deref().map_or(1, |s| 1 + text(s))
            + all(&self.fields)
            + self.reason.as_deref().map_or(1, |s| 1 + text(s))
            + self.grant.as_ref().map_or(1, |(g, _)| 6 + text(g))
            + opt(&self.policy_version)
            + self.detail.as_deref().map_or(1, |s| 1 + text(s))
            + 33
    }

    /// An event of the gateway itself (no request): a policy reload, say.
    pub fn system(time_ms: i64, kind: EventKind, operation: &'static str) -> Self {
        Self {
            time_ms,
            request_id: String::new(),
            kind,
            operation: operation.into(),
            dept: None,
            subject: None,
            roles: Vec::new(),
            cert_fingerprint: None,
            source: Text::from(""),
            dataset: None,
            resident: None,
            purpose: None,
            case_ref: None,
            fields: Vec::new(),
            outcome: Outcome::Allow,
            reason: None,
            grant: None,
            policy_version: None,
            status: 0,
            latency_us: 0,
            detail: None,
            proof: None,
        }
    }
}

/// One event of the chain, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Encoding version ([`FORMAT_VERSION`]).
    pub version: u8,
    /// Position in this node's chain, from 1.
    pub seq: u64,
    /// The gateway node that wrote it.
    pub node: String,
    /// The hash of the event before (or [`GENESIS`]).
    pub prev_hash: Hash,
    /// What happened.
    pub body: EventBody,
}

/// An event could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than a hash.
    #[error("the stored value is truncated")]
    Truncated,
    /// Not a valid encoding.
    #[error("the stored event cannot be decoded: {0}")]
    Invalid(String),
}

impl Event {
    /// The canonical bytes: the postcard encoding, which is what is hashed.
    pub fn canonical(&self) -> Vec<u8> {
        // Encoding a plain struct of owned strings, integers and vectors into
        // a Vec cannot fail; an empty result would fail verification loudly.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// The stored value: canonical bytes followed by their hash (the
    /// version's suite: SHA-256 or SM3).
    pub fn seal(&self) -> (Vec<u8>, Hash) {
        let mut bytes = self.canonical();
        let hash = suite_of(self.version).hash(&bytes);
        bytes.extend_from_slice(&hash);
        (bytes, hash)
    }

    /// The stored value and hash of the event `version`, `seq`, `node` (its
    /// postcard encoding, [`encode_node`]), `prev_hash` and `body`: the same
    /// bytes [`Self::seal`] gives for that event, framed from the body the
    /// request encoded.
    pub fn seal_encoded(
        version: u8,
        seq: u64,
        node: &[u8],
        prev_hash: &Hash,
        body: &EncodedBody,
    ) -> (Vec<u8>, Hash) {
        let mut out = Vec::with_capacity(1 + 10 + node.len() + 32 + body.bytes.len() + 33 + 32);
        out.push(version);
        let mut varint = [0u8; 10];
        let n = postcard::to_slice(&seq, &mut varint).map_or(0, |s| s.len());
        out.extend_from_slice(&varint[..n]);
        out.extend_from_slice(node);
        out.extend_from_slice(prev_hash);
        out.extend_from_slice(&body.bytes);
        match &body.proof {
            None => out.push(0),
            Some(p) => {
                out.push(1);
                out.extend_from_slice(p);
            }
        }
        let hash = suite_of(version).hash(&out);
        out.extend_from_slice(&hash);
        (out, hash)
    }

    /// Splits a stored value into the event, its recorded hash and the hash
    /// recomputed from its bytes (they differ if the value was altered).
    pub fn open(stored: &[u8]) -> Result<(Self, Hash, Hash), DecodeError> {
        let split = stored.len().checked_sub(32).ok_or(DecodeError::Truncated)?;
        let (bytes, recorded) = stored.split_at(split);
        let mut rec = [0u8; 32];
        rec.copy_from_slice(recorded);
        let invalid = |e: postcard::Error| DecodeError::Invalid(e.to_string());
        let event: Self = match bytes.first() {
            Some(1) => postcard::from_bytes::<EventV1>(bytes)
                .map_err(invalid)?
                .into(),
            Some(&FORMAT_VERSION) | Some(&FORMAT_VERSION_GM) => {
                postcard::from_bytes(bytes).map_err(invalid)?
            }
            Some(v) => {
                return Err(DecodeError::Invalid(format!(
                    "unknown event format version {v}"
                )));
            }
            None => return Err(DecodeError::Truncated),
        };
        let recomputed = suite_of(event.version).hash(bytes);
        Ok((event, rec, recomputed))
    }
}

/// A node id as the canonical bytes hold it.
pub fn encode_node(node: &str) -> Vec<u8> {
    postcard::to_allocvec(node).unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn body(n: u32) -> EventBody {
        EventBody {
            time_ms: 1_764_000_000_000 + i64::from(n),
            request_id: format!("req-{n}"),
            kind: EventKind::Query,
            operation: "lookup".into(),
            dept: Some("minzheng".into()),
            subject: Some("clerk-007".into()),
            roles: vec!["dibao_reviewer".into()],
            cert_fingerprint: None,
            source: "127.0.0.1:5000".into(),
            dataset: Some("gongan.hukou".into()),
            resident: Some([7; 16]),
            purpose: Some("dibao_review".into()),
            case_ref: Some("MZ-2026-000123".into()),
            fields: vec!["name".into()],
            outcome: Outcome::Allow,
            reason: None,
            grant: Some(("minzheng-dibao-hukou".into(), 1)),
            policy_version: Some("abc".into()),
            status: 200,
            latency_us: 120,
            detail: None,
            proof: None,
        }
    }

    #[test]
    fn events_written_before_proofs_existed_still_open() {
        let b = body(3);
        let v1 = EventV1 {
            version: 1,
            seq: 3,
            node: "n".into(),
            prev_hash: GENESIS,
            body: EventBodyV1 {
                time_ms: b.time_ms,
                request_id: b.request_id.clone(),
                kind: b.kind,
                operation: b.operation.to_string(),
                dept: b.dept.clone(),
                subject: b.subject.clone(),
                roles: b.roles.clone(),
                cert_fingerprint: b.cert_fingerprint,
                source: b.source.clone(),
                dataset: b.dataset.clone(),
                resident: b.resident,
                purpose: b.purpose.clone(),
                case_ref: b.case_ref.clone(),
                fields: b.fields.clone(),
                outcome: b.outcome,
                reason: b.reason.clone().map(Cow::into_owned),
                grant: b.grant.clone(),
                policy_version: b.policy_version.clone(),
                status: b.status,
                latency_us: b.latency_us,
                detail: b.detail.clone(),
            },
        };
        let mut stored = postcard::to_allocvec(&v1).unwrap();
        let hash = sha256(&stored);
        stored.extend_from_slice(&hash);
        let (event, recorded, recomputed) = Event::open(&stored).unwrap();
        assert_eq!(event.version, 1);
        assert_eq!(event.body, b, "read as written, with no proof");
        assert_eq!(recorded, recomputed, "its hash is over the bytes as stored");
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof!["[a-z_.]{0,12}", "\\PC{0,40}", "x{120,300}"]
    }

    prop_compose! {
        fn any_body()(
            time_ms in any::<i64>(),
            request_id in any_text(),
            kind in proptest::sample::select(vec![EventKind::Query, EventKind::AuditReview, EventKind::PolicyAdmin, EventKind::Other]),
            operation in any_text(),
            dept in proptest::option::of(any_text()),
            subject in proptest::option::of(any_text()),
            roles in proptest::collection::vec(any_text(), 0..4),
            cert_fingerprint in proptest::option::of(any::<[u8; 32]>()),
            source in any_text(),
            dataset in proptest::option::of(any_text()),
            resident in proptest::option::of(any::<[u8; 16]>()),
            purpose in proptest::option::of(any_text()),
            case_ref in proptest::option::of(any_text()),
            fields in proptest::collection::vec(any_text(), 0..200),
            outcome in proptest::sample::select(vec![Outcome::Allow, Outcome::Deny, Outcome::Error]),
            reason in proptest::option::of(any_text()),
            grant in proptest::option::of((any_text(), any::<u32>())),
            policy_version in proptest::option::of(any_text()),
            status in any::<u16>(),
            latency_us in any::<u32>(),
            detail in proptest::option::of(any_text()),
            proof in proptest::option::of(any::<[u8; 32]>()),
        ) -> EventBody {
            EventBody {
                time_ms,
                request_id,
                kind,
                operation: operation.into(),
                dept: dept.map(Into::into),
                subject: subject.map(Into::into),
                roles: roles.into_iter().map(Into::into).collect(),
                cert_fingerprint,
                source: source.into(),
                dataset: dataset.map(Into::into),
                resident,
                purpose: purpose.map(Into::into),
                case_ref,
                fields: fields.into_iter().map(Into::into).collect(),
                outcome,
                reason: reason.map(Into::into),
                grant: grant.map(|(g, v)| (g.into(), v)),
                policy_version: policy_version.map(Into::into),
                status,
                latency_us,
                detail,
                proof,
            }
        }
    }

    proptest! {
        /// A body encoded by hand is postcard's encoding of it, less its
        /// last member (the proof the writer frames), for any body.
        #[test]
        fn a_body_encoded_by_hand_is_its_postcard_encoding(b in any_body()) {
            let whole = postcard::to_allocvec(&b).unwrap();
            let tail = if b.proof.is_some() { 33 } else { 1 };
            let encoded = b.encode();
            prop_assert_eq!(&encoded.bytes[..], &whole[..whole.len() - tail]);
            prop_assert_eq!(encoded.proof, b.proof);
            prop_assert!(whole.len() <= b.encoded_len_bound());
        }
    }

    #[test]
    fn a_body_is_encoded_into_one_allocation_of_its_bound() {
        let mut full = body(1);
        full.cert_fingerprint = Some([3; 32]);
        full.reason = Some("token-invalid".into());
        full.detail = Some("x".repeat(300));
        full.fields = (0..40).map(|i| format!("field_{i}").into()).collect();
        full.proof = Some([9; 32]);
        for b in [
            body(1),
            full,
            EventBody::system(0, EventKind::Other, "start"),
        ] {
            let whole = postcard::to_allocvec(&b).unwrap();
            assert!(
                whole.len() <= b.encoded_len_bound(),
                "{} > bound",
                whole.len()
            );
            let encoded = b.encode();
            assert_eq!(
                encoded.bytes.capacity(),
                b.encoded_len_bound(),
                "no regrowth"
            );
        }
    }

    #[test]
    fn an_event_framed_from_its_encoded_body_is_the_event_sealed() {
        for (n, version, proof) in [
            (1, FORMAT_VERSION, None),
            (2, FORMAT_VERSION, Some([7u8; 32])),
            (300, FORMAT_VERSION_GM, Some([0u8; 32])),
            (70_000, FORMAT_VERSION_GM, None),
        ] {
            let mut b = body(n);
            b.proof = proof;
            b.detail = (n > 100).then(|| "x".repeat(200));
            let event = Event {
                version,
                seq: u64::from(n) * 1_000_003,
                node: format!("node-{n}"),
                prev_hash: [n as u8; 32],
                body: b,
            };
            let framed = Event::seal_encoded(
                version,
                event.seq,
                &encode_node(&event.node),
                &event.prev_hash,
                &event.body.encode(),
            );
            assert_eq!(framed, event.seal(), "event {n}");
            // A proof set after encoding, as the writer sets it.
            let mut later = event.body.clone();
            later.proof = None;
            let mut encoded = later.encode();
            encoded.proof = event.body.proof;
            assert_eq!(
                Event::seal_encoded(
                    version,
                    event.seq,
                    &encode_node(&event.node),
                    &event.prev_hash,
                    &encoded
                ),
                event.seal()
            );
        }
    }

    #[test]
    fn sealed_events_open_to_themselves() {
        let e = Event {
            version: FORMAT_VERSION,
            seq: 1,
            node: "n".into(),
            prev_hash: GENESIS,
            body: body(1),
        };
        let (stored, hash) = e.seal();
        let (back, recorded, recomputed) = Event::open(&stored).unwrap();
        assert_eq!(back, e);
        assert_eq!(recorded, hash);
        assert_eq!(recomputed, hash);
        assert!(stored.len() < 300, "{} bytes", stored.len());
    }
}
