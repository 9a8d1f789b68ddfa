-- Dead letters the DLQ refused for good (too large once the failure metadata is added),
-- kept by the consumers until a redrive takes them; `zerolost dlq list` shows them.
CREATE TABLE IF NOT EXISTS {parked} (
    id                   BLOB NOT NULL PRIMARY KEY,
    original_destination TEXT NOT NULL,
    destination          TEXT NOT NULL,
    msg_key              TEXT,
    headers              TEXT NOT NULL,
    payload              BLOB NOT NULL,
    created_at           INTEGER NOT NULL,
    failure              TEXT NOT NULL,
    refused              TEXT NOT NULL,
    parked_at            INTEGER NOT NULL
);
