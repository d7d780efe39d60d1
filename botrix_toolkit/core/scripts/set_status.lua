-- set_status: Go's UpdateJobStatus for one or many jobs, with the event of
-- CompleteJob, FailJob or CancelJob when asked, atomically per call.
--
-- For each id: SET status EX ttl; publish status_updated(status); when the
-- status is final (completed, failed, cancelled): ZREM queue, SREM
-- processing, ZREM leases; then publish the final event if one is given.
-- A final status that is already stored is not published again.
--
-- KEYS[1]      queue (sorted set)
-- KEYS[2]      processing (set)
-- KEYS[3]      leases (sorted set)
-- KEYS[3+i]    status:<id i> (string)
-- ARGV[1]      the status to store (already validated: pending, running,
--              completed, failed or cancelled)
-- ARGV[2]      ttl in seconds of the status key
-- ARGV[3]      updates channel
-- ARGV[4]      final event to publish ('' for none): job_completed, ...
-- ARGV[5]      which ids to change: 'known' (status key exists, or queued,
--              or processing), 'queued' (in the queue now) or 'processing'
-- ARGV[6]      error message carried in the events ('' for none)
-- ARGV[7]      the events' timestamp, whole Unix seconds (the caller's clock)
-- ARGV[7+i]    id i
-- Returns one letter per id, in order: 'c' changed, 's' skipped because it
-- did not match ARGV[5], 'w' skipped because its status key holds another
-- type than a string (one bad key must not block clearing a whole queue).
-- A string, not lists: the server spends about a microsecond converting each
-- table of a reply, on every completion.
--
-- Key types: a final status writes queue, processing and leases, so their
-- types are proven before the first write of the call, by the calls a
-- completion makes anyway (SREM processing, then ZSCORE queue and leases,
-- undoing that SREM when one fails): three type checks fewer on every
-- completion. Another status writes none of them; they are checked up front.
--- @include "refuse_type"
--- @include "expect_type"
--- @include "publish"
--- @include "error_field"
local queue, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local status, ttl, channel, final_event, which, message, ts =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

local final = status == 'completed' or status == 'failed' or status == 'cancelled'
if not final then
  expect_type(queue, 'zset')
  expect_type(processing, 'set')
  expect_type(leases, 'zset')
end
-- Whether queue, processing and leases are proven (see the header).
local proven = not final

-- A call on queue, processing or leases whose type may not be proven yet.
-- Nothing of this call is written then, but for `undo_id`'s SREM, put back.
local function checked(command, key, wanted, id, undo_id)
  local reply = redis.pcall(command, key, id)
  if type(reply) == 'table' and reply.err then
    if undo_id then redis.call('SADD', processing, undo_id) end
    refuse_type(key, wanted)
  end
  return reply
end

-- Whether the id is one to change, and whether this took it out of
-- processing. Checked cheapest-first: most calls finish a job that is held,
-- and for a final status SREM itself tells whether it was (one call fewer
-- than SISMEMBER then SREM, on every completion).
local function matches(id, status_key)
  if which == 'queued' then return checked('ZSCORE', queue, 'zset', id) ~= false, false end
  if final and checked('SREM', processing, 'set', id) == 1 then return true, true end
  if not final and redis.call('SISMEMBER', processing, id) == 1 then return true, false end
  if which == 'processing' then return false, false end
  return redis.call('EXISTS', status_key) == 1 or checked('ZSCORE', queue, 'zset', id) ~= false, false
end

local outcome = {}
local extra = error_field(message)
for i = 4, #KEYS do
  local id, status_key = ARGV[4 + i], KEYS[i]
  local wanted, unheld = matches(id, status_key)
  -- For the first id to change: where it is, which proves the keys' types.
  local queued, leased = true, true
  if wanted and not proven then
    if not unheld and which ~= 'processing' then
      unheld = checked('SREM', processing, 'set', id) == 1
    end
    local undo_id = unheld and id or nil
    queued = checked('ZSCORE', queue, 'zset', id, undo_id) ~= false
    leased = checked('ZSCORE', leases, 'zset', id, undo_id) ~= false
    proven = true
  end
  if not wanted then
    outcome[#outcome + 1] = 's'
  else
    -- SET ... GET refuses a key of another type without writing it, and
    -- returns the status it replaces: one call instead of TYPE, GET and SET.
    local previous = redis.pcall('SET', status_key, status, 'EX', ttl, 'GET')
    if type(previous) == 'table' and previous.err then
      if unheld then redis.call('SADD', processing, id) end  -- left as it was
      outcome[#outcome + 1] = 'w'
    else
      if final then
        if queued then redis.call('ZREM', queue, id) end
        if not unheld then redis.call('SREM', processing, id) end
        if leased then redis.call('ZREM', leases, id) end
      end
      -- A final status already stored (a completion sent twice, say by a
      -- worker retrying after a lost reply) is not published again, so each
      -- job ends exactly once.
      if not (final and previous == status) then
        publish(channel, 'status_updated', id, ts, status, extra)
        if final_event ~= '' then
          publish(channel, final_event, id, ts, status, extra)
        end
      end
      outcome[#outcome + 1] = 'c'
    end
  end
end
return table.concat(outcome)
