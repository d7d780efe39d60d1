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
--- @include "expect_type"
--- @include "publish"
--- @include "error_field"
--- @include "is_final"
local queue, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local status, ttl, channel, final_event, which, message, ts =
  ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]

expect_type(queue, 'zset')
expect_type(processing, 'set')
expect_type(leases, 'zset')

local final = is_final(status)

-- Whether the id is one to change, and whether this took it out of
-- processing. Checked cheapest-first: most calls finish a job that is held,
-- and for a final status SREM itself tells whether it was (one call fewer
-- than SISMEMBER then SREM, on every completion).
local function matches(id, status_key)
  if which == 'queued' then return redis.call('ZSCORE', queue, id) ~= false, false end
  if final and redis.call('SREM', processing, id) == 1 then return true, true end
  if not final and redis.call('SISMEMBER', processing, id) == 1 then return true, false end
  if which == 'processing' then return false, false end
  return redis.call('EXISTS', status_key) == 1 or redis.call('ZSCORE', queue, id) ~= false, false
end

local outcome = {}
local extra = error_field(message)
for i = 4, #KEYS do
  local id, status_key = ARGV[4 + i], KEYS[i]
  local wanted, unheld = matches(id, status_key)
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
        redis.call('ZREM', queue, id)
        if not unheld then redis.call('SREM', processing, id) end
        redis.call('ZREM', leases, id)
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
