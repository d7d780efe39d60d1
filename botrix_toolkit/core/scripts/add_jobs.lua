-- add_jobs: Go's AddJob for one or many jobs, atomically per call.
--
-- For each job: SET data EX ttl; SET status pending EX ttl; publish
-- status_updated(pending); ZADD queue id at the back of its level; publish
-- job_added. Unlike Go, the queue key gets no EXPIRE (defect 2 of
-- docs/wire-format.md), and the score is not Go's -priority but one strictly
-- inside the level, taken from the queue's sequence counter in list order,
-- so that jobs are served first in, first out within a priority by the
-- toolkit and by the Go service's ZPOPMIN alike (docs/wire-format.md, "Scores").
--
-- KEYS[1]        queue (sorted set)
-- KEYS[2]        sequence (string counter)
-- KEYS[2i+1]     data:<id of job i>      (string)
-- KEYS[2i+2]     status:<id of job i>    (string)
-- ARGV[1]        ttl in seconds of data and status
-- ARGV[2]        updates channel
-- ARGV[3]        the events' timestamp, whole Unix seconds (the caller's
--                clock, as the Go service uses its own)
-- ARGV[3i+1]     id of job i
-- ARGV[3i+2]     job JSON of job i
-- ARGV[3i+3]     priority of job i (integer)
-- Returns the number of jobs added, or a WRONGTYPE error with nothing changed.
--- @include "refuse_type"
--- @include "expect_type"
--- @include "publish"
--- @include "priority_field"
--- @include "take_sequence"
--- @include "back_of_level"
local queue, sequence, ttl, channel, ts = KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3]
local jobs = (#KEYS - 2) / 2

if jobs == 1 then
  -- One job (add_job): its own writes prove the key types, and a failing one
  -- undoes those before it; four up-front checks would cost a call each.
  -- SET ... GET refuses a key of another type without writing it.
  local id, body, priority = ARGV[4], ARGV[5], ARGV[6]
  local data_key, status_key = KEYS[3], KEYS[4]
  local function restore(key, old_value)  -- an undone key keeps the fresh TTL
    if old_value then redis.call('SET', key, old_value, 'KEEPTTL') else redis.call('DEL', key) end
  end
  local old_data = redis.pcall('SET', data_key, body, 'EX', ttl, 'GET')
  if type(old_data) == 'table' then refuse_type(data_key, 'string') end
  local old_status = redis.pcall('SET', status_key, 'pending', 'EX', ttl, 'GET')
  if type(old_status) == 'table' then
    restore(data_key, old_data)
    refuse_type(status_key, 'string')
  end
  local ok, n = pcall(take_sequence, sequence, 1)
  if not ok then
    restore(data_key, old_data)
    restore(status_key, old_status)
    error(n)
  end
  if type(redis.pcall('ZADD', queue, back_of_level(tonumber(priority), n), id)) == 'table' then
    restore(data_key, old_data)
    restore(status_key, old_status)
    if n == 1 then redis.call('DEL', sequence) else redis.call('DECRBY', sequence, 1) end
    refuse_type(queue, 'zset')
  end
  publish(channel, 'status_updated', id, ts, 'pending')
  publish(channel, 'job_added', id, ts, 'pending', priority_field(priority))
  return 1
end

-- Several jobs: all or none, so every key is checked before the first write
-- (the counter by taking the numbers: INCRBY refuses without writing).
expect_type(queue, 'zset')
for i = 1, jobs do
  expect_type(KEYS[2 * i + 1], 'string')
  expect_type(KEYS[2 * i + 2], 'string')
end
local first = take_sequence(sequence, jobs)

for i = 1, jobs do
  local id, body, priority = ARGV[3 * i + 1], ARGV[3 * i + 2], ARGV[3 * i + 3]
  redis.call('SET', KEYS[2 * i + 1], body, 'EX', ttl)
  redis.call('SET', KEYS[2 * i + 2], 'pending', 'EX', ttl)
  publish(channel, 'status_updated', id, ts, 'pending')
  redis.call('ZADD', queue, back_of_level(tonumber(priority), first + i - 1), id)
  publish(channel, 'job_added', id, ts, 'pending', priority_field(priority))
end
return jobs
