//! The cluster's PostgreSQL schema, in one place: every table is created if
//! missing when a node starts (one node at a time, under an advisory lock).

/// Policy versions, nodes, answer keys and the cluster's own facts.
pub(super) const POLICY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tongban_schema (
    component text PRIMARY KEY,
    version   integer NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_policy_version (
    version      bigint PRIMARY KEY CHECK (version > 0),
    content_hash text NOT NULL,
    files        jsonb NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    node_id      text NOT NULL,
    author       text NOT NULL,
    action       text NOT NULL,
    summary      text NOT NULL
);
ALTER TABLE tongban_policy_version ADD COLUMN IF NOT EXISTS reason text;
CREATE TABLE IF NOT EXISTS tongban_node (
    node_id        text PRIMARY KEY,
    instance       text NOT NULL,
    listen         text NOT NULL,
    software       text NOT NULL,
    started_at     timestamptz NOT NULL,
    heartbeat_at   timestamptz NOT NULL,
    heartbeat_secs integer NOT NULL,
    policy_version bigint NOT NULL,
    audit_head     bigint NOT NULL DEFAULT 0,
    audit_shipped  bigint NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS tongban_answer_key (
    kid           text PRIMARY KEY,
    node_id       text NOT NULL,
    jwk           jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS tongban_cluster_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO tongban_schema (component, version) VALUES ('policy', 1), ('node', 1)
    ON CONFLICT (component) DO NOTHING;
";

/// The central copy of every node's audit log.
pub(super) const AUDIT_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tongban_audit_event (
    node_id       text NOT NULL,
    seq           bigint NOT NULL,
    time          timestamptz NOT NULL,
    kind          text NOT NULL,
    operation     text NOT NULL,
    dept          text,
    subject       text,
    dataset       text,
    resident      bytea,
    purpose       text,
    case_ref      text,
    outcome       text NOT NULL,
    reason        text,
    status        integer NOT NULL,
    grant_id      text,
    fields        jsonb NOT NULL,
    request_id    text NOT NULL,
    stored        bytea NOT NULL,
    PRIMARY KEY (node_id, seq, time)
) PARTITION BY RANGE (time);
CREATE INDEX IF NOT EXISTS tongban_audit_event_resident
    ON tongban_audit_event (resident, time) WHERE resident IS NOT NULL;
CREATE INDEX IF NOT EXISTS tongban_audit_event_time
    ON tongban_audit_event (time DESC, node_id COLLATE \"C\" DESC, seq DESC);
CREATE INDEX IF NOT EXISTS tongban_audit_event_dept
    ON tongban_audit_event (dept, time DESC) WHERE dept IS NOT NULL;
CREATE INDEX IF NOT EXISTS tongban_audit_event_case
    ON tongban_audit_event (dept, case_ref, time) WHERE case_ref IS NOT NULL;
CREATE TABLE IF NOT EXISTS tongban_audit_checkpoint (
    node_id text NOT NULL,
    seq     bigint NOT NULL,
    signed  bytea NOT NULL,
    PRIMARY KEY (node_id, seq)
);
CREATE TABLE IF NOT EXISTS tongban_audit_shipped (
    node_id     text PRIMARY KEY,
    through_seq bigint NOT NULL,
    anchor_seq  bigint NOT NULL,
    anchor_hash bytea NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_audit_exported (
    node_id     text PRIMARY KEY,
    through_seq bigint NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_audit_prune (
    id          bigserial PRIMARY KEY,
    pruned_at   timestamptz NOT NULL DEFAULT now(),
    partition   text NOT NULL,
    node_id     text NOT NULL,
    through_seq bigint NOT NULL,
    anchor_hash bytea NOT NULL,
    events      bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_audit_key (
    node_id    text NOT NULL,
    public_pem text NOT NULL,
    PRIMARY KEY (node_id, public_pem)
);
";

/// The log of emergency stops.
pub(super) const STOPS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tongban_stop_change (
    id           bigserial PRIMARY KEY,
    change       jsonb NOT NULL,
    node_id      text NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now()
);
";

/// Anomaly flags marked reviewed, and the flags already announced (by the
/// node that found them first).
pub(super) const FLAGS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tongban_flag_review (
    id      text PRIMARY KEY,
    by_whom text NOT NULL,
    at_ms   bigint NOT NULL,
    note    text NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_flag_announced (
    id      text PRIMARY KEY,
    node_id text NOT NULL,
    at_ms   bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tongban_flag_announced_at ON tongban_flag_announced (at_ms);
CREATE TABLE IF NOT EXISTS tongban_objection (
    id       text PRIMARY KEY,
    resident text NOT NULL,
    node     text NOT NULL,
    seq      bigint NOT NULL,
    state    text NOT NULL,
    filed_ms bigint NOT NULL,
    doc      text NOT NULL
);
CREATE INDEX IF NOT EXISTS tongban_objection_resident ON tongban_objection (resident);
CREATE UNIQUE INDEX IF NOT EXISTS tongban_objection_open
    ON tongban_objection (resident, node, seq) WHERE state = 'open';
CREATE TABLE IF NOT EXISTS tongban_sharing_request (
    id       text PRIMARY KEY,
    state    text NOT NULL,
    filed_ms bigint NOT NULL,
    doc      text NOT NULL
);
CREATE TABLE IF NOT EXISTS tongban_data_objection (
    id       text PRIMARY KEY,
    state    text NOT NULL,
    filed_ms bigint NOT NULL,
    doc      text NOT NULL
);
";

/// Idempotency keys of verify and batch requests (keyed hashes only): a
/// reservation while `first_seq` is empty, then the first request's events.
pub(super) const IDEMPOTENCY_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tongban_idempotency (
    key       bytea PRIMARY KEY,
    request   bytea NOT NULL,
    node_id   text NOT NULL,
    at_ms     bigint NOT NULL,
    first_seq bigint,
    last_seq  bigint
);
CREATE INDEX IF NOT EXISTS tongban_idempotency_at ON tongban_idempotency (at_ms);
";
