-- The fencing number of each claim: it grows by one with every claim of the id, so a later
-- holder always has a larger one.
ALTER TABLE {inbox} ADD COLUMN fence BIGINT NOT NULL DEFAULT 0;
