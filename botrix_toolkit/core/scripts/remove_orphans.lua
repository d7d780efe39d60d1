-- remove_orphans: drops from the queue the ids whose job data has expired
-- (defect 3 of docs/wire-format.md), checking again here so that a job
-- re-added since the caller looked is kept.
--
-- KEYS[1]      queue (sorted set)
-- KEYS[1+i]    data:<id i> (string)
-- ARGV[1]      updates channel
-- ARGV[1+i]    id i
-- Returns the ids removed; each is published as job_orphan_removed.
--- @include "expect_type"
--- @include "server_time"
--- @include "publish"
--- @include "error_field"
local queue, channel = KEYS[1], ARGV[1]
expect_type(queue, 'zset')
local removed, ts = {}, (server_time())
for i = 2, #KEYS do
  local id = ARGV[i]
  if redis.call('EXISTS', KEYS[i]) == 0 and redis.call('ZREM', queue, id) == 1 then
    publish(channel, 'job_orphan_removed', id, ts, '', error_field('job data expired'))
    table.insert(removed, id)
  end
end
return removed
