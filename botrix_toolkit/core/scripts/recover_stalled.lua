-- recover_stalled: puts back in the queue every job held longer than the
-- timeout (the Go service has no recovery: defect 5 of docs/wire-format.md).
--
-- A job in processing without a lease (taken by the Go service, which keeps
-- none) gets one now, so it is recovered once it has been seen held for the
-- timeout. A stalled job: SREM processing, ZREM leases, EXPIRE data ttl,
-- publish job_recovered, then AddJob's writes and events with its stored
-- priority, first in its level (docs/wire-format.md, "Scores"). A stalled
-- job whose data expired or is not JSON cannot be served again: it is
-- failed with the reason. Leases of jobs no longer in processing are dropped.
--
-- The ids come from the processing set, so this script forms job keys from
-- the prefixes that keys.py passes in ARGV. A stalled job whose keys this
-- node cannot reach (its cluster slot is being moved) is left held, for a
-- later call: its keys are read before anything of it is written.
--
-- KEYS[1]  queue (sorted set)
-- KEYS[2]  processing (set)
-- KEYS[3]  leases (sorted set: id -> lease time in ms)
-- ARGV[1]  data key prefix
-- ARGV[2]  status key prefix
-- ARGV[3]  timeout in ms
-- ARGV[4]  ttl in seconds of data and status
-- ARGV[5]  updates channel
-- Returns {recovered ids, flat list id, reason of jobs failed instead,
-- the number of stalled jobs left held because their keys were unreachable}.
--- @include "expect_type"
--- @include "unreachable"
--- @include "server_time"
--- @include "publish"
--- @include "error_field"
--- @include "stored_priority"
--- @include "put_back"
local queue, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local data_prefix, status_prefix = ARGV[1], ARGV[2]
local timeout, ttl, channel = tonumber(ARGV[3]), ARGV[4], ARGV[5]

expect_type(queue, 'zset')
expect_type(processing, 'set')
expect_type(leases, 'zset')

local ts, now = server_time()
local recovered, failed = {}, {}

local left_held = 0

local function fail(id, status_key, status_type, reason)
  if status_type ~= 'string' and status_type ~= 'none' then
    reason = reason .. '; status key is not a string'
  else
    redis.call('SET', status_key, 'failed', 'EX', ttl)
    publish(channel, 'status_updated', id, ts, 'failed', error_field(reason))
  end
  publish(channel, 'job_failed', id, ts, 'failed', error_field(reason))
  table.insert(failed, id)
  table.insert(failed, reason)
end

-- Stalled jobs, latest lease first: each goes first in its level, so the
-- one leased earliest (claimed first) ends up served first.
local stalled = {}
for _, id in ipairs(redis.call('SMEMBERS', processing)) do
  local leased_at = redis.call('ZSCORE', leases, id)
  if not leased_at then
    redis.call('ZADD', leases, now, id)
  elseif now - tonumber(leased_at) >= timeout then
    table.insert(stalled, {id, tonumber(leased_at)})
  end
end
table.sort(stalled, function(a, b)
  if a[2] ~= b[2] then return a[2] > b[2] end
  return a[1] > b[1]
end)

for _, entry in ipairs(stalled) do
  local id = entry[1]
  local data_key, status_key = data_prefix .. id, status_prefix .. id
  local data = redis.pcall('GET', data_key)
  local status_type = redis.pcall('TYPE', status_key)
  if unreachable(data) or unreachable(status_type) then
    left_held = left_held + 1
  else
    status_type = status_type['ok']
    redis.call('SREM', processing, id)
    redis.call('ZREM', leases, id)
    if type(data) ~= 'string' then
      fail(id, status_key, status_type, data and 'data key is not a string' or 'job data expired')
    else
      local priority = stored_priority(data)
      if priority == nil then
        fail(id, status_key, status_type, 'job data is not a JSON object with an integer priority')
      elseif status_type == 'string' or status_type == 'none' then
        put_back(queue, channel, id, data_key, status_key, priority, ttl, ts)
        table.insert(recovered, id)
      else
        fail(id, status_key, status_type, 'stalled job cannot be put back')
      end
    end
  end
end

for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', now - timeout)) do
  if redis.call('SISMEMBER', processing, id) == 0 then
    redis.call('ZREM', leases, id)
  end
end
return {recovered, failed, left_held}
