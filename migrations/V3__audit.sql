-- The audit trail: one row per committed revision, naming who wrote it, by
-- which request, and the records it changed (the body: a version byte,
-- then the protobuf AuditEntry). Written in the commit's own transaction,
-- so that it names exactly the writes that happened. Entries go with the
-- licence log's retention: up to the revision of the newest event removed.

CREATE TABLE lodestone_audit (
    revision bigint PRIMARY KEY,
    -- Never earlier than the row of the revision before it.
    recorded_at timestamptz NOT NULL,
    body bytea NOT NULL
);

CREATE INDEX lodestone_audit_recorded_at ON lodestone_audit (recorded_at);
