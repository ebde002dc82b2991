//! Verifying each node's central copy (`tongban audit verify --cluster`):
//! the chain from its anchor, the searchable columns against the sealed
//! bytes, the checkpoints' signatures, and nothing cut from the end.

use tokio_postgres::Client;

use crate::audit::chain::{BrokenLink, ChainVerifier, VerifyReport};
use crate::audit::checkpoint::{Keyring, SignedCheckpoint};
use crate::audit::event::{GENESIS, Hash};
use crate::cluster::store::{ClusterError, PolicyStore};

use super::ship::Columns;

impl PolicyStore {
    /// Verifies every node's central copy: its chain from its anchor (no gap,
    /// no altered or moved row), the searchable columns against the sealed
    /// bytes, and its checkpoints' signatures against `keys` (or, without
    /// them, the keys the nodes registered).
    pub async fn verify_audit(
        &self,
        keys: Option<&Keyring>,
    ) -> Result<Vec<NodeVerifyReport>, ClusterError> {
        let client = self.pool().get().await?;
        let nodes = client
            .query(
                "SELECT node_id, through_seq, anchor_seq, anchor_hash FROM tongban_audit_shipped
                 ORDER BY node_id",
                &[],
            )
            .await?;
        let mut out = Vec::new();
        for row in nodes {
            let node: String = row.get(0);
            let through: i64 = row.get(1);
            let anchor_seq: i64 = row.get(2);
            let anchor_hash: Vec<u8> = row.get(3);
            let mut anchor = GENESIS;
            if anchor_hash.len() == 32 {
                anchor.copy_from_slice(&anchor_hash);
            }
            let own_keys;
            let keys = match keys {
                Some(k) => k,
                None => {
                    let mut ring = Keyring::new(Vec::new());
                    for r in client
                        .query(
                            "SELECT public_pem FROM tongban_audit_key WHERE node_id = $1",
                            &[&node],
                        )
                        .await?
                    {
                        let pem: String = r.get(0);
                        ring.extend(Keyring::from_pem(&pem));
                    }
                    own_keys = ring;
                    &own_keys
                }
            };
            let report = verify_node(
                &client,
                &node,
                (u64::try_from(anchor_seq).unwrap_or(0), anchor),
                keys,
            )
            .await?;
            let shipped_through = u64::try_from(through).unwrap_or(0);
            let mut report = report;
            if report.broken.is_none() && report.head_seq < shipped_through {
                report.broken = Some(BrokenLink {
                    seq: report.head_seq + 1,
                    problem: format!(
                        "the node shipped events through {shipped_through}, but the copy ends at {} (rows removed from the end)",
                        report.head_seq
                    ),
                });
            }
            out.push(NodeVerifyReport {
                node_id: node,
                shipped_through,
                report,
            });
        }
        Ok(out)
    }
}

/// One node's central copy, verified.
#[derive(Debug, serde::Serialize)]
pub struct NodeVerifyReport {
    /// The node.
    pub node_id: String,
    /// How far its shipper says it shipped.
    pub shipped_through: u64,
    /// The chain's verification.
    pub report: VerifyReport,
}

/// Pages through one node's rows in sequence order (10,000 at a time, so
/// memory stays bounded whatever the log's size) and verifies them.
async fn verify_node(
    client: &Client,
    node: &str,
    anchor: (u64, Hash),
    keys: &Keyring,
) -> Result<VerifyReport, ClusterError> {
    let mut checkpoints = Vec::new();
    for r in client
        .query(
            "SELECT seq, signed FROM tongban_audit_checkpoint WHERE node_id = $1 ORDER BY seq",
            &[&node],
        )
        .await?
    {
        let seq: i64 = r.get(0);
        let bytes: Vec<u8> = r.get(1);
        match SignedCheckpoint::decode(&bytes) {
            Some(cp) => checkpoints.push(cp),
            None => {
                return Ok(ChainVerifier::from_anchor(anchor.0, anchor.1).report(Some(
                    BrokenLink {
                        seq: u64::try_from(seq).unwrap_or(0),
                        problem: "the checkpoint's row cannot be decoded (altered in PostgreSQL)"
                            .into(),
                    },
                )));
            }
        }
    }
    let mut v = ChainVerifier::from_anchor(anchor.0, anchor.1);
    let mut cps = checkpoints
        .iter()
        .filter(|c| c.checkpoint.seq > anchor.0)
        .peekable();
    let mut after: i64 = i64::try_from(anchor.0).unwrap_or(0);
    loop {
        let page = client
            .query(
                "SELECT seq, stored, (extract(epoch FROM time) * 1000)::bigint, kind, operation,
                        dept, subject, dataset, resident, purpose, case_ref, outcome, reason,
                        status, grant_id, fields::text, request_id
                   FROM tongban_audit_event WHERE node_id = $1 AND seq > $2
                  ORDER BY seq LIMIT 10000",
                &[&node, &after],
            )
            .await?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            let seq: i64 = r.get(0);
            let seq_u = u64::try_from(seq).unwrap_or(0);
            let stored: Vec<u8> = r.get(1);
            if let Err(b) = v.check(seq_u, &stored) {
                return Ok(v.report(Some(b)));
            }
            // The bytes hold; the columns searched by officers must say the same.
            let mut c = Columns::default();
            let same = c.push(seq_u, stored).is_ok()
                && c.node[0] == node
                && c.time_ms[0] == r.get::<_, i64>(2)
                && c.kind[0] == r.get::<_, String>(3)
                && c.operation[0] == r.get::<_, String>(4)
                && c.dept[0] == r.get::<_, Option<String>>(5)
                && c.subject[0] == r.get::<_, Option<String>>(6)
                && c.dataset[0] == r.get::<_, Option<String>>(7)
                && c.resident[0] == r.get::<_, Option<Vec<u8>>>(8)
                && c.purpose[0] == r.get::<_, Option<String>>(9)
                && c.case_ref[0] == r.get::<_, Option<String>>(10)
                && c.outcome[0] == r.get::<_, String>(11)
                && c.reason[0] == r.get::<_, Option<String>>(12)
                && c.status[0] == r.get::<_, i32>(13)
                && c.grant_id[0] == r.get::<_, Option<String>>(14)
                && serde_json::from_str::<serde_json::Value>(&c.fields[0]).ok()
                    == serde_json::from_str::<serde_json::Value>(&r.get::<_, String>(15)).ok()
                && c.request_id[0] == r.get::<_, String>(16);
            if !same {
                return Ok(v.report(Some(BrokenLink {
                    seq: seq_u,
                    problem: "the row's columns do not say what its sealed bytes say (altered in PostgreSQL)".into(),
                })));
            }
            while let Some(cp) = cps.next_if(|c| c.checkpoint.seq <= seq_u) {
                if cp.checkpoint.seq < seq_u {
                    continue;
                }
                if let Err(b) = v.check_checkpoint(cp, Some(keys)) {
                    return Ok(v.report(Some(b)));
                }
            }
            after = seq;
        }
    }
    if let Some(cp) = cps.next() {
        let broken = BrokenLink {
            seq: v.head() + 1,
            problem: format!(
                "a signed checkpoint covers event {} but the copy ends at {} (rows removed from the end)",
                cp.checkpoint.seq,
                v.head()
            ),
        };
        return Ok(v.report(Some(broken)));
    }
    Ok(v.report(None))
}
