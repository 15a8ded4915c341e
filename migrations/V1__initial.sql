-- The store that replicas share. Every write takes the one head row, so
-- writes are serialised by the database: commit order is revision order,
-- and revisions and licence-log sequences are contiguous (they come from
-- the head row, never from a SEQUENCE, which leaves gaps on rollback).

CREATE TABLE lodestone_head (
    id smallint PRIMARY KEY CHECK (id = 1),
    -- The newest committed revision.
    revision bigint NOT NULL,
    -- The newest licence log sequence.
    log_head bigint NOT NULL
);
INSERT INTO lodestone_head (id, revision, log_head) VALUES (1, 0, 0);

-- Every record as of the head: kind (1 material, 2 supplier, 3 component,
-- 4 line, 5 licence), id, the revision that last wrote it, and its
-- encoding (a version byte, then protobuf). Ids compare bytewise ("C"), as
-- the service orders them.
CREATE TABLE lodestone_records (
    kind smallint NOT NULL,
    id text COLLATE "C" NOT NULL,
    revision bigint NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (kind, id)
);

-- The change feed: each revision's records as stored (or as removed), in
-- parts of bounded size, so that every replica applies the same revisions
-- in the same order.
CREATE TABLE lodestone_changes (
    revision bigint NOT NULL,
    part integer NOT NULL,
    -- The licence log's head once the revision committed.
    log_head bigint NOT NULL,
    committed_at timestamptz NOT NULL DEFAULT now(),
    body bytea NOT NULL,
    PRIMARY KEY (revision, part)
);

-- The licence change log: one entry per change to a licence.
CREATE TABLE lodestone_log (
    sequence bigint PRIMARY KEY,
    revision bigint NOT NULL,
    recorded_at timestamptz NOT NULL,
    body bytea NOT NULL
);
