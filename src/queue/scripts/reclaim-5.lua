--[[
  Reclaims one worker's jobs if it is dead: registered, but its heartbeat key has expired.
  Its whole processing list goes back to the front of the pending list of each job's kind (so those
  jobs run next, in their original order) and the worker is unregistered. Each job's `attempts` grows
  by one: a job that keeps killing the workers that take it reaches MAX_ATTEMPTS and is dead-lettered
  by the next one.
  KEYS[1] workers set
  KEYS[2] the worker's heartbeat key
  KEYS[3] the worker's processing list
  KEYS[4] pending list of extract jobs
  KEYS[5] pending list of detect jobs (and of anything else: a malformed job is dropped by a worker)
  ARGV[1] worker id
  ARGV[2] 'unregistered' to reclaim a processing list whose worker is not in the workers set (the
          sweep for lists the set does not lead to); otherwise the worker must be registered
  Returns the number of jobs moved (0 when the worker is alive or already reclaimed).
  Atomic, so when several reclaimers race for the same worker exactly one moves its jobs; the
  others find it unregistered. The caller lists the workers set and runs this once per worker,
  which keeps every key declared in KEYS and built by keys.ts.
]]
local registered = redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
if registered == (ARGV[2] == 'unregistered') then return 0 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
-- Workers consume pending from the right and processing lists hold the newest job on the left.
-- Moving the newest held job first and pushing each to the right end leaves the oldest held job
-- at the right end: held jobs run before everything else, oldest first.
local moved = 0
while true do
  local payload = redis.call('LPOP', KEYS[3])
  if not payload then break end
  local target = KEYS[5]
  local ok, job = pcall(cjson.decode, payload)
  if ok and type(job) == 'table' then
    job['attempts'] = (tonumber(job['attempts']) or 0) + 1
    payload = cjson.encode(job)
    if job['kind'] == 'extract' then target = KEYS[4] end
  end
  redis.call('RPUSH', target, payload)
  moved = moved + 1
end
redis.call('SREM', KEYS[1], ARGV[1])
return moved
