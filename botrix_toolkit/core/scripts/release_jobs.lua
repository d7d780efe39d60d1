-- release_jobs: a worker hands jobs it holds back to the queue, unfinished
-- and unfailed (a graceful stop that cannot wait for them).
--
-- For each id still held: SREM processing, ZREM leases, publish
-- job_recovered (reason "released"), then AddJob's writes and events with
-- the job's stored priority, first in its level (docs/wire-format.md,
-- "Scores"): the first id given is served first. Events match
-- recover_stalled's, so an analysis counts a released job as put back, not
-- as a new job.
--
-- KEYS[1]      queue (sorted set)
-- KEYS[2]      processing (set)
-- KEYS[3]      leases (sorted set)
-- KEYS[2+2i]   data:<id i> (string)
-- KEYS[3+2i]   status:<id i> (string)
-- ARGV[1]      ttl in seconds of data and status
-- ARGV[2]      updates channel
-- ARGV[2+i]    id i
-- Returns the ids put back (ids no longer held, or whose data is gone or is
-- not a job, are skipped: recover_stalled deals with the latter).
--- @include "expect_type"
--- @include "server_time"
--- @include "stored_priority"
--- @include "put_back"
local queue, processing, leases, ttl, channel = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]

expect_type(queue, 'zset')
expect_type(processing, 'set')
expect_type(leases, 'zset')

local ts = server_time()
local released = {}
-- Last id first: each goes first in its level, so the first one ends first.
for i = #ARGV - 2, 1, -1 do
  local id, data_key, status_key = ARGV[2 + i], KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  local data = redis.pcall('GET', data_key)
  local held = redis.call('SISMEMBER', processing, id) == 1
  local found = redis.call('TYPE', status_key)['ok']
  if held and type(data) == 'string' and (found == 'string' or found == 'none') then
    local priority = stored_priority(data)
    if priority then
      redis.call('SREM', processing, id)
      redis.call('ZREM', leases, id)
      put_back(queue, channel, id, data_key, status_key, priority, ttl, ts, ',"reason":"released"')
      table.insert(released, 1, id)
    end
  end
end
return released
