-- zerolost outbox and inbox. Times are epoch milliseconds from the database clock.
CREATE TABLE IF NOT EXISTS {outbox} (
    id               BLOB PRIMARY KEY,
    destination      TEXT NOT NULL,
    msg_key          TEXT,
    headers          TEXT NOT NULL,
    payload          BLOB NOT NULL,
    status           INTEGER NOT NULL DEFAULT 0, -- 0 pending, 1 published, 2 parked
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,           -- due from; a lease hides the row until it expires
    lease_token      BLOB,
    lease_expires_at INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    published_at     INTEGER
);
-- The lease query is a range scan of this partial index.
CREATE INDEX IF NOT EXISTS {prefix}outbox_due ON {outbox} (next_attempt_at) WHERE status = 0;
-- Retention deletes published rows oldest first.
CREATE INDEX IF NOT EXISTS {prefix}outbox_published ON {outbox} (published_at) WHERE status = 1;

CREATE TABLE IF NOT EXISTS {inbox} (
    id               BLOB PRIMARY KEY,
    state            INTEGER NOT NULL DEFAULT 0, -- 0 free, 1 claimed, 2 processed, 3 dead-lettered
    claim_token      BLOB,
    claim_expires_at INTEGER,
    finished_at      INTEGER,
    keep_until       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    first_failure_at INTEGER,
    last_failure_at  INTEGER,
    last_error       TEXT,
    duplicates       INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS {prefix}inbox_finished ON {inbox} (finished_at) WHERE state >= 2;
CREATE INDEX IF NOT EXISTS {prefix}inbox_keep ON {inbox} (keep_until) WHERE state >= 2;
