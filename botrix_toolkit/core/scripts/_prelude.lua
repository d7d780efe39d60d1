-- Shared helpers. A script of this folder names each one it calls with a line
-- --- @include "<helper>", and scripting.py puts those paragraphs of this
-- file in front of it at load time (with the helpers they include in turn).
-- One helper (with what it alone needs) per paragraph, separated by a blank
-- line. Keep it to pure functions: no key is named here.

-- Refuses to touch a key that holds another type, naming it: a SET would
-- silently destroy whatever was there, and a failed call mid-script cannot be
-- rolled back, so every script proves its keys' types before it writes them
-- (expect_type), or undoes the write that proved one (claim_jobs).
local function refuse_type(key, wanted)
  error({err = 'WRONGTYPE key ' .. key .. ' holds a ' .. redis.call('TYPE', key)['ok'] ..
    ', expected a ' .. wanted})
end

-- The check is an O(1) read that fails on any other type: cheaper than TYPE
-- (whose reply is a table), and it runs on every completion. The command is
-- chosen without a table: a script that includes this would build it on
-- every call, used or not.
--- @include "refuse_type"
local function expect_type(key, wanted)
  local size_command = wanted == 'zset' and 'ZCARD' or wanted == 'set' and 'SCARD' or 'STRLEN'
  if type(redis.pcall(size_command, key)) == 'table' then
    refuse_type(key, wanted)
  end
end

-- Whether a call on a key the script forms itself (not in KEYS) failed for
-- another reason than the key's type: on a cluster whose slot is being moved
-- to another node, such a key may already be there, and this node refuses
-- it. The job must then be left exactly as it is, to be served later.
local function unreachable(reply)
  return type(reply) == 'table' and reply.err ~= nil and string.sub(reply.err, 1, 9) ~= 'WRONGTYPE'
end

-- Server time as (whole seconds as text, milliseconds as a number): leases
-- taken by workers on different machines compare, and events carry Go's
-- whole-second timestamps. The seconds stay TIME's own digits: events only
-- write them out, and a number is formatted anew (sprintf) each time.
local function server_time()
  local t = redis.call('TIME')
  return t[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- An event message exactly as the Go service writes it; `extra` is a JSON
-- fragment (',"priority":2') appended to the data object, or nil. Statuses
-- of the queue need no JSON escaping, and a job's id is encoded once for
-- its consecutive events: both save work on every operation.
local encoded_id, encoded_for
local function publish(channel, event, job_id, ts, status, extra)
  if encoded_for ~= job_id then
    encoded_id, encoded_for = cjson.encode(job_id), job_id
  end
  local plain = status == 'pending' or status == 'running' or status == 'completed'
    or status == 'failed' or status == 'cancelled' or status == ''
  local status_json = plain and ('"' .. status .. '"') or cjson.encode(status)
  redis.call('PUBLISH', channel,
    '{"event":"' .. event .. '","job_id":' .. encoded_id .. ',"timestamp":' .. ts ..
    ',"data":{"job_id":' .. encoded_id .. ',"status":' .. status_json .. (extra or '') .. '}}')
end

local function priority_field(priority)
  return ',"priority":' .. priority
end

local function error_field(message)
  if message == nil or message == '' then return nil end
  return ',"error":' .. cjson.encode(message)
end

local function is_final(status)
  return status == 'completed' or status == 'failed' or status == 'cancelled'
end

-- The priority stored in a job's JSON, or nil when the data is not a JSON
-- object with an integer priority (Go's zero value, 0, when it is missing).
local function stored_priority(data)
  local ok, job = pcall(cjson.decode, data)
  if not ok or type(job) ~= 'table' then return nil end
  local priority = tonumber(job['priority'] or 0)
  if priority == nil or priority ~= math.floor(priority) then return nil end
  return priority
end

-- Scores of the jobs the toolkit writes (docs/wire-format.md, "Scores"): a
-- job of priority p scores -(p+1) + k * 2^-50 with 0 < k < 2^50, strictly
-- inside its level (-(p+1), -p), so each of the Go service's three
-- overlapping ZCOUNT ranges counts it once, and ZPOPMIN serves a level in
-- order of k. Every k is exact in a double for priorities -8..7.
-- %.17g: text that reads back as the same double (tostring keeps 14 digits).
local score_unit, back_start = 2 ^ -50, 2 ^ 49
local function level_score(priority, k)
  return string.format('%.17g', -(priority + 1) + k * score_unit)
end

-- The score at the back of a level for the n-th placement counted by the
-- queue's sequence key: k = 2^49 + n, first in, first out. Past n = 2^49 - 1
-- the scores tie at the level's last k, and ties are served in id order.
--- @include "level_score"
local function back_of_level(priority, n)
  return level_score(priority, back_start + math.min(n, back_start - 1))
end

-- The first of `count` numbers taken from the queue's sequence counter
-- (INCRBY: every producer shares it, and a script runs alone); a key that
-- holds anything but an integer is refused, naming it, and left unchanged.
--- @include "refuse_type"
local function take_sequence(sequence_key, count)
  local last = redis.pcall('INCRBY', sequence_key, count)
  if type(last) == 'table' then refuse_type(sequence_key, 'counter') end
  return last - count + 1
end

-- The score that puts a job first in its level: just below the first k the
-- toolkit gave there, and never above 2^49 - 1, so ahead of every later
-- placement at the back. The Go service's jobs of the level (score -p)
-- follow every toolkit-placed one whatever is done here.
--- @include "level_score"
local function front_of_level(queue, priority)
  local low = -(priority + 1)
  local first = redis.call('ZRANGEBYSCORE', queue, '(' .. low, '(' .. -priority, 'WITHSCORES', 'LIMIT', 0, 1)
  local k = back_start
  if first[2] then
    k = math.min(k, math.floor((tonumber(first[2]) - low) / score_unit + 0.5))
  end
  return level_score(priority, math.max(k - 1, 1))
end

-- A held job goes back to the queue as AddJob would put it there, announced
-- by job_recovered (with `reason`, a JSON fragment, or nil) so an analysis
-- counts it as put back, not as a new job. The caller has taken it out of
-- processing and leases. It goes first in its level: it was claimed before
-- every job still waiting there (docs/wire-format.md, "Scores").
--- @include "publish"
--- @include "priority_field"
--- @include "front_of_level"
local function put_back(queue, channel, id, data_key, status_key, priority, ttl, ts, reason)
  redis.call('EXPIRE', data_key, ttl)
  publish(channel, 'job_recovered', id, ts, 'pending', priority_field(priority) .. (reason or ''))
  redis.call('SET', status_key, 'pending', 'EX', ttl)
  publish(channel, 'status_updated', id, ts, 'pending')
  redis.call('ZADD', queue, front_of_level(queue, priority), id)
  publish(channel, 'job_added', id, ts, 'pending', priority_field(priority))
end
