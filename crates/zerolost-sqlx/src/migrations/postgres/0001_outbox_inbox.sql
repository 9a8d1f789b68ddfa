-- zerolost outbox and inbox. Times are epoch milliseconds from the database clock.
CREATE TABLE IF NOT EXISTS {outbox} (
    id               UUID PRIMARY KEY,
    destination      TEXT NOT NULL,
    msg_key          TEXT,
    headers          TEXT NOT NULL,
    payload          BYTEA NOT NULL,
    status           SMALLINT NOT NULL DEFAULT 0, -- 0 pending, 1 published, 2 parked
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,             -- due from; a lease hides the row until it expires
    lease_token      UUID,
    lease_expires_at BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    published_at     BIGINT
) WITH (fillfactor = 80); -- room for in-place (HOT) updates of leases
-- The lease query is a range scan of this partial index.
CREATE INDEX IF NOT EXISTS {prefix}outbox_due ON {outbox} (next_attempt_at) WHERE status = 0;
-- Retention deletes published rows oldest first.
CREATE INDEX IF NOT EXISTS {prefix}outbox_published ON {outbox} (published_at) WHERE status = 1;

CREATE TABLE IF NOT EXISTS {inbox} (
    id               UUID PRIMARY KEY,
    state            SMALLINT NOT NULL DEFAULT 0, -- 0 free, 1 claimed, 2 processed, 3 dead-lettered
    claim_token      UUID,
    claim_expires_at BIGINT,
    finished_at      BIGINT,
    keep_until       BIGINT,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_failure_at BIGINT,
    last_failure_at  BIGINT,
    last_error       TEXT,
    duplicates       BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {prefix}inbox_finished ON {inbox} (finished_at) WHERE state >= 2;
CREATE INDEX IF NOT EXISTS {prefix}inbox_keep ON {inbox} (keep_until) WHERE state >= 2;
