-- requeue_failed: Go's FailJob with requeue, atomically.
--
-- UpdateJobStatus(failed) (SET status failed, publish status_updated(failed),
-- ZREM queue, SREM processing), then AddJob of the job with its priority
-- lowered by one (SET data, SET status pending, publish
-- status_updated(pending), ZADD queue, publish job_added). No job_failed is
-- published, as in Go. The job goes to the back of its new level, as a new
-- add does (docs/wire-format.md, "Scores"): a failing job does not hold up
-- the jobs that waited behind it.
--
-- Failing is for a job that is held: one not in processing is refused here,
-- in the same atomic step, with nothing written.
--
-- KEYS[1]  queue (sorted set)
-- KEYS[2]  processing (set)
-- KEYS[3]  leases (sorted set)
-- KEYS[4]  status:<id> (string)
-- KEYS[5]  data:<id> (string)
-- KEYS[6]  sequence (string counter)
-- ARGV[1]  job id
-- ARGV[2]  the job JSON to store (priority already lowered)
-- ARGV[3]  the new priority (integer)
-- ARGV[4]  ttl in seconds of data and status
-- ARGV[5]  updates channel
-- ARGV[6]  error message carried in the failed event ('' for none)
-- Returns 1, or when the job is not held, its status ('' when it has none).
--- @include "expect_type"
--- @include "server_time"
--- @include "publish"
--- @include "priority_field"
--- @include "error_field"
--- @include "take_sequence"
--- @include "back_of_level"
local queue, processing, leases, status_key, data_key, sequence = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local id, body, priority, ttl, channel, message = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]

expect_type(queue, 'zset')
expect_type(processing, 'set')
expect_type(leases, 'zset')
expect_type(status_key, 'string')
expect_type(data_key, 'string')
if redis.call('SISMEMBER', processing, id) == 0 then
  return redis.call('GET', status_key) or ''
end

local n = take_sequence(sequence, 1)
local ts = server_time()
redis.call('SET', status_key, 'failed', 'EX', ttl)
publish(channel, 'status_updated', id, ts, 'failed', error_field(message))
redis.call('ZREM', queue, id)
redis.call('SREM', processing, id)
redis.call('ZREM', leases, id)

redis.call('SET', data_key, body, 'EX', ttl)
redis.call('SET', status_key, 'pending', 'EX', ttl)
publish(channel, 'status_updated', id, ts, 'pending')
redis.call('ZADD', queue, back_of_level(tonumber(priority), n), id)
publish(channel, 'job_added', id, ts, 'pending', priority_field(priority))
return 1
