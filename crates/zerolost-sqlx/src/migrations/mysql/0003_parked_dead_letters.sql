-- Dead letters the DLQ refused for good (too large once the failure metadata is added),
-- kept by the consumers until a redrive takes them; `zerolost dlq list` shows them.
CREATE TABLE IF NOT EXISTS {parked} (
    id                   BINARY(16) NOT NULL PRIMARY KEY,
    original_destination VARCHAR(512) NOT NULL,
    destination          VARCHAR(512) NOT NULL,
    msg_key              TEXT,
    headers              TEXT NOT NULL,
    payload              LONGBLOB NOT NULL,
    created_at           BIGINT NOT NULL,
    failure              TEXT NOT NULL,
    refused              TEXT NOT NULL,
    parked_at            BIGINT NOT NULL
) ENGINE = InnoDB;
