//! The Lua scripts: each runs atomically on the keys of one id, which share a hash tag so
//! they live in one Redis Cluster slot.

use std::sync::LazyLock;

use redis::Script;

/// Claims an id: a done id answers its mark; a free one is locked with the token for the
/// lease and its fencing counter goes up by one (kept at least `fence ttl`).
/// KEYS: lock, mark, fence. ARGV: token, lease ms, fence ttl ms.
/// Returns `{1, fence}` when claimed, `{2, mark}` when done, `{0, ""}` when held.
pub(crate) static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local mark = redis.call('GET', KEYS[2])
if mark then return {2, mark} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  local fence = redis.call('INCR', KEYS[3])
  if redis.call('PTTL', KEYS[3]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[3], ARGV[3])
  end
  return {1, tostring(fence)}
end
return {0, ''}
"#,
    )
});

/// Extends the claim if the token still holds it (the fencing counter lives at least as
/// long). KEYS: lock, fence. ARGV: token, lease ms. Returns 1, or 0 when the claim is lost.
pub(crate) static EXTEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
  return 1
end
return 0
"#,
    )
});

/// Finishes the claim if the token still holds it: writes the mark with its TTL, drops
/// the claim and the failure counter, keeps the fencing counter at least as long as the
/// mark. Completing again with the same token and outcome is a no-op success.
/// KEYS: lock, mark, failures, fence. ARGV: token, mark value, keep ms, outcome.
/// Returns 1 on success, 0 when the claim is lost.
pub(crate) static COMPLETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
  redis.call('DEL', KEYS[1], KEYS[3])
  if redis.call('PTTL', KEYS[4]) < tonumber(ARGV[3]) then
    redis.call('PEXPIRE', KEYS[4], ARGV[3])
  end
  return 1
end
local mark = redis.call('GET', KEYS[2])
if mark then
  local outcome, token = string.match(mark, '^(%a[%a_]*)|([^|]+)|')
  if outcome == ARGV[4] and token == ARGV[1] then return 1 end
end
return 0
"#,
    )
});

/// Drops the claim if the token still holds it. KEYS: lock. ARGV: token. Returns 1 or 0.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"#,
    )
});

/// Counts a failure and refreshes the counter's TTL.
/// KEYS: failures. ARGV: now ms, error, ttl ms. Returns the hash as a flat list.
pub(crate) static RECORD_FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
redis.call('HINCRBY', KEYS[1], 'attempts', 1)
redis.call('HSETNX', KEYS[1], 'first_at', ARGV[1])
redis.call('HSET', KEYS[1], 'last_at', ARGV[1], 'last_error', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
"#,
    )
});

/// Removes a dead-letter mark (and the failure counter) so a redriven copy is processed
/// afresh; a processed mark is left alone. KEYS: mark, failures. Returns 1 when removed.
pub(crate) static FORGET_DEAD_LETTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local mark = redis.call('GET', KEYS[1])
if mark and string.sub(mark, 1, 14) == 'dead_lettered|' then
  redis.call('DEL', KEYS[1], KEYS[2])
  return 1
end
return 0
"#,
    )
});
