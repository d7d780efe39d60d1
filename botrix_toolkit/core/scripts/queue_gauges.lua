-- queue_gauges: a queue's health in one read, for metrics. Writes nothing.
--
-- Exact pending counts per level (the three disjoint score ranges of
-- queries.py, not Go's overlapping ones), the processing count, and the jobs
-- held past their lease: a lease older than the lease length whose id is
-- still in processing (a lease left behind by a job the Go service finished
-- is not a held job). Jobs the Go service claimed carry no lease until
-- recover_stalled gives them one, so they are not counted as stalled.
-- Also, for each candidate id the caller names (the oldest jobs it saw
-- added), whether it is still in the queue: that tells the caller which of
-- them still waits, without a second round trip.
--
-- KEYS[1]  queue (sorted set)
-- KEYS[2]  processing (set)
-- KEYS[3]  leases (sorted set: id -> lease time in ms)
-- ARGV[1], ARGV[2]  min and max score of high jobs
-- ARGV[3], ARGV[4]  min and max score of normal jobs
-- ARGV[5], ARGV[6]  min and max score of low jobs
-- ARGV[7]  lease length in ms: a lease not renewed for longer is stalled
-- ARGV[8..]  candidate job ids
-- Returns {server time in ms, high, normal, low, processing, stalled,
-- then one 1 (still queued) or 0 per candidate, in ARGV order}.
--- @include "expect_type"
--- @include "server_time"
local queue, processing, leases = KEYS[1], KEYS[2], KEYS[3]

expect_type(queue, 'zset')
expect_type(processing, 'set')
expect_type(leases, 'zset')

local _, now = server_time()
local reply = {
  now,
  redis.call('ZCOUNT', queue, ARGV[1], ARGV[2]),
  redis.call('ZCOUNT', queue, ARGV[3], ARGV[4]),
  redis.call('ZCOUNT', queue, ARGV[5], ARGV[6]),
  redis.call('SCARD', processing),
}

-- Only the expired leases are read: a handful, unless workers died en masse.
local stalled = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', leases, '-inf', '(' .. (now - tonumber(ARGV[7])))) do
  stalled = stalled + redis.call('SISMEMBER', processing, id)
end
table.insert(reply, stalled)

for i = 8, #ARGV do
  table.insert(reply, redis.call('ZSCORE', queue, ARGV[i]) and 1 or 0)
end
return reply
