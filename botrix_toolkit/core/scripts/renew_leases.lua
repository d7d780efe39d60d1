-- renew_leases: a worker still working on its jobs says so, at server time.
--
-- KEYS[1]    processing (set)
-- KEYS[2]    leases (sorted set: id -> lease time in ms)
-- ARGV[i]    job ids
-- Returns the number of leases renewed (jobs no longer held are skipped:
-- they were finished, cancelled or recovered meanwhile).
--- @include "expect_type"
--- @include "server_time"
local processing, leases = KEYS[1], KEYS[2]
expect_type(processing, 'set')
expect_type(leases, 'zset')
local _, now = server_time()
local renewed = 0
for _, id in ipairs(ARGV) do
  if redis.call('SISMEMBER', processing, id) == 1 then
    redis.call('ZADD', leases, now, id)
    renewed = renewed + 1
  end
end
return renewed
