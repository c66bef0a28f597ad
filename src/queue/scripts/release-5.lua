--[[
  A worker shutting down hands back the jobs it holds and unregisters, whatever its heartbeat says.
  KEYS[1] workers set
  KEYS[2] the worker's heartbeat key
  KEYS[3] the worker's processing list
  KEYS[4] pending list of extract jobs
  KEYS[5] pending list of detect jobs (and of anything that is not an extract job)
  ARGV[1] worker id
  Returns the number of jobs handed back.
]]
-- Same order as reclaim-5.lua: the held jobs go to the consuming (right) end, oldest last moved.
-- Payloads move unchanged (ack and dead-letter match them exactly); only their kind is read.
local moved = 0
while true do
  local payload = redis.call('LPOP', KEYS[3])
  if not payload then break end
  local ok, job = pcall(cjson.decode, payload)
  local target = KEYS[5]
  if ok and type(job) == 'table' and job['kind'] == 'extract' then target = KEYS[4] end
  redis.call('RPUSH', target, payload)
  moved = moved + 1
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return moved
