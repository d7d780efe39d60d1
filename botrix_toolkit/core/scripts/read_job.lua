-- read_job: one job as it is now, read in one atomic step (get_job). It
-- writes nothing: the job JSON keeps what the Go service stored.
--
-- KEYS[1]  data:<id> (string)
-- KEYS[2]  status:<id> (string)
-- Returns {data or nil, status or nil, the status key's time to live in ms
-- (PTTL: -1 without expiry, -2 when missing), the server time in ms}; with
-- both, get_job knows when the status was last written. A status key of
-- another type reads as nil (get_job then shows the stored status, and
-- get_job_status reports the key).
--- @include "server_time"
local data = redis.call('GET', KEYS[1])
local status = redis.pcall('GET', KEYS[2])
if type(status) == 'table' then status = false end
local _, now = server_time()
return {data, status, redis.call('PTTL', KEYS[2]), now}
