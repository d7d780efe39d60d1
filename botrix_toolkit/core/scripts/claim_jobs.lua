-- claim_jobs: Go's DequeueJob for up to n jobs, atomically.
--
-- Pops ids in dequeue order (lowest score, i.e. highest priority, first) and
-- for each one whose data exists: SADD processing; a lease at server time;
-- SET status running EX ttl; publish status_updated(running).
-- Ids whose data expired (orphans) are dropped from the queue and reported
-- with a job_orphan_removed event; ids whose status is already final are
-- dropped silently; ids whose keys hold the wrong type are set aside as
-- failed with the reason. None of these is handed out. Go loses a claimed job
-- when it crashes between ZPOPMIN and SADD; here both happen in one script.
--
-- The ids are not known before the pop, so this script (like recover_stalled)
-- forms job keys itself, from prefixes that keys.py passes in ARGV. On a
-- cluster whose slot is being moved, such a key may already be on the other
-- node: that job is put back as it was and the claim ends; when it had done
-- nothing else, the reply is a TRYAGAIN error.
--
-- KEYS[1]  queue (sorted set)
-- KEYS[2]  processing (set)
-- KEYS[3]  leases (sorted set: id -> lease time in ms)
-- ARGV[1]  data key prefix ("<prefix>:data:")
-- ARGV[2]  status key prefix ("<prefix>:status:")
-- ARGV[3]  n, the most jobs to claim
-- ARGV[4]  ttl in seconds of the status key
-- ARGV[5]  updates channel
-- ARGV[6]  the most ids to pop in this call (bounds the time spent on orphans)
-- Returns one flat list: skipped, set_aside, the claim's server time (ms),
-- then set_aside pairs id, reason (jobs failed for wrong key types), then the
-- claimed pairs id, data. skipped
-- counts the orphans and finished ids dropped. Flat because the server spends
-- about a microsecond converting each table of a reply, on every claim.
--- @include "refuse_type"
--- @include "unreachable"
--- @include "server_time"
--- @include "publish"
--- @include "error_field"
--- @include "is_final"
local queue, processing, leases = KEYS[1], KEYS[2], KEYS[3]
local data_prefix, status_prefix = ARGV[1], ARGV[2]
local wanted, ttl, channel, max_pops = tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])

local claimed, set_aside, skipped, pops = {}, {}, 0, 0
local ts, now = server_time()

-- No type checks up front (each is a server call on every claim): the first
-- ZPOPMIN proves the queue before anything is written, and the first SADD
-- and ZADD prove processing and leases. When one of those fails, the job is
-- put back exactly as it was before the error is raised; only the first hold
-- of a call can fail, as no key changes type while a script runs.
local function hold(id, score)
  local added = redis.pcall('SADD', processing, id)
  if type(added) == 'table' then
    redis.call('ZADD', queue, score, id)
    refuse_type(processing, 'set')
  end
  local leased = redis.pcall('ZADD', leases, now, id)
  if type(leased) == 'table' then
    if added == 1 then redis.call('SREM', processing, id) end
    redis.call('ZADD', queue, score, id)
    refuse_type(leases, 'zset')
  end
  return added, leased
end

-- Undoes hold() for a job that turns out not to be servable.
local function unhold(id, added, leased)
  if added == 1 then redis.call('SREM', processing, id) end
  if leased == 1 then redis.call('ZREM', leases, id) end
end

-- A popped job whose keys this node cannot reach now (its slot is moving to
-- another cluster node) goes back as it was, and the claim ends there. Its
-- checks sit inside the error branches: no cost on the usual path.
local unreachable_id

while #claimed < 2 * wanted and pops < max_pops do
  local popped = redis.pcall('ZPOPMIN', queue)
  if popped.err then refuse_type(queue, 'zset') end
  if #popped == 0 then break end
  pops = pops + 1
  local id, score = popped[1], popped[2]
  local status_key = status_prefix .. id
  local data = redis.pcall('GET', data_prefix .. id)
  if type(data) == 'table' then
    -- The data key holds another type (the job is set aside), or is unreachable.
    local marked  -- stays nil when the data key is unreachable
    if not unreachable(data) then
      marked = redis.pcall('SET', status_key, 'failed', 'EX', ttl, 'GET')
    end
    if marked == nil or unreachable(marked) then
      redis.call('ZADD', queue, score, id)
      unreachable_id = id
      break
    end
    local reason = 'data key ' .. data_prefix .. id .. ' is not a string'
    if type(marked) == 'table' then
      reason = reason .. ', nor is its status key'  -- left as found: not ours to overwrite
    else
      publish(channel, 'status_updated', id, ts, 'failed', error_field(reason))
    end
    publish(channel, 'job_failed', id, ts, 'failed', error_field(reason))
    table.insert(set_aside, id)
    table.insert(set_aside, reason)
  elseif not data then
    skipped = skipped + 1
    publish(channel, 'job_orphan_removed', id, ts, '', error_field('job data expired'))
  else
    local added, leased = hold(id, score)
    -- SET ... GET: one call that marks the job running, returns the status it
    -- replaces and refuses (without writing) a status key of another type.
    local previous = redis.pcall('SET', status_key, 'running', 'EX', ttl, 'GET')
    if type(previous) == 'table' then
      unhold(id, added, leased)
      if unreachable(previous) then
        redis.call('ZADD', queue, score, id)
        unreachable_id = id
        break
      end
      -- The status key is not ours to overwrite: report and leave it.
      table.insert(set_aside, id)
      table.insert(set_aside, 'status key ' .. status_key .. ' is not a string')
      publish(channel, 'job_failed', id, ts, 'failed', error_field('status key is not a string'))
    elseif previous and is_final(previous) then
      -- Finished while still queued (a stale id): put its status back, drop it.
      unhold(id, added, leased)
      redis.call('SET', status_key, previous, 'KEEPTTL')
      skipped = skipped + 1
    else
      publish(channel, 'status_updated', id, ts, 'running')
      table.insert(claimed, id)
      table.insert(claimed, data)
    end
  end
end

if unreachable_id and #claimed == 0 and #set_aside == 0 and skipped == 0 then
  -- Nothing done: the caller is to try again (redis-py's cluster client does, for a while).
  return redis.error_reply('TRYAGAIN job ' .. unreachable_id ..
    ' cannot be reached on this node: its slot is being moved to another cluster node')
end
if #set_aside == 0 and #claimed == 2 then
  -- A worker's claim of one job: one table, not three (5k server instructions of about 140k).
  return {skipped, 0, now, claimed[1], claimed[2]}
end
local reply = {skipped, #set_aside / 2, now}
for _, value in ipairs(set_aside) do table.insert(reply, value) end
for _, value in ipairs(claimed) do table.insert(reply, value) end
return reply
