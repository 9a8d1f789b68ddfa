-- zerolost outbox and inbox (MySQL 8 / MariaDB >= 10.6). Times are epoch milliseconds
-- from the database clock.
CREATE TABLE IF NOT EXISTS {outbox} (
    id               BINARY(16) NOT NULL PRIMARY KEY,
    destination      VARCHAR(512) NOT NULL,
    msg_key          TEXT,
    headers          MEDIUMTEXT NOT NULL,
    payload          LONGBLOB NOT NULL,
    status           SMALLINT NOT NULL DEFAULT 0, -- 0 pending, 1 published, 2 parked
    attempts         INT NOT NULL DEFAULT 0,
    next_attempt_at  BIGINT NOT NULL,             -- due from; a lease hides the row until it expires
    lease_token      BINARY(16),
    lease_expires_at BIGINT,
    last_error       TEXT,
    created_at       BIGINT NOT NULL,
    published_at     BIGINT,
    -- The lease query is a range scan of (status = 0, next_attempt_at <= now).
    KEY {prefix}outbox_due (status, next_attempt_at),
    -- Retention deletes published rows oldest first.
    KEY {prefix}outbox_published (status, published_at)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS {inbox} (
    id               BINARY(16) NOT NULL PRIMARY KEY,
    state            SMALLINT NOT NULL DEFAULT 0, -- 0 free, 1 claimed, 2 processed, 3 dead-lettered
    claim_token      BINARY(16),
    claim_expires_at BIGINT,
    finished_at      BIGINT,
    keep_until       BIGINT,
    attempts         INT NOT NULL DEFAULT 0,
    first_failure_at BIGINT,
    last_failure_at  BIGINT,
    last_error       TEXT,
    duplicates       BIGINT NOT NULL DEFAULT 0,
    KEY {prefix}inbox_finished (state, finished_at),
    KEY {prefix}inbox_keep (state, keep_until)
) ENGINE = InnoDB;
