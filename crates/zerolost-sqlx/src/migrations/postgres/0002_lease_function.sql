-- The lease as a function that pins its plan: an ordered range scan of the due index.
-- Left to itself the planner picks a bitmap scan plus a sort of every pending row when
-- its statistics under-count them (a fresh table, or a backlog that built up since the
-- last ANALYZE), and each lease then costs O(pending rows) exactly when the relay has
-- the most to catch up on.
CREATE OR REPLACE FUNCTION {lease_fn}(p_token UUID, p_lease_ms BIGINT, p_max BIGINT)
RETURNS SETOF {outbox}
LANGUAGE plpgsql VOLATILE
SET enable_bitmapscan = off
SET enable_seqscan = off
SET enable_sort = off
SET plan_cache_mode = force_custom_plan
AS $$
BEGIN
  RETURN QUERY
  WITH due AS (
    SELECT d.id FROM {outbox} AS d
    WHERE d.status = 0
      AND d.next_attempt_at <= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
      AND (d.lease_expires_at IS NULL
           OR d.lease_expires_at <= (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT)
    ORDER BY d.next_attempt_at
    LIMIT p_max
    FOR UPDATE SKIP LOCKED
  )
  UPDATE {outbox} AS o
  SET lease_token = p_token,
      lease_expires_at = (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT + p_lease_ms
  FROM due WHERE o.id = due.id
  RETURNING o.*;
END
$$;
