--[[
  A worker shutting down hands back the jobs it holds (to the front of pending) and unregisters.
  KEYS[1] pending list
  KEYS[2] the worker's processing list
  KEYS[3] workers set
  ARGV[1] worker id
  ARGV[2] the worker's heartbeat key
  Returns the number of jobs handed back.
]]
-- Workers consume pending from the right. Moving the newest held job (left) first and pushing each
-- to the right leaves the oldest held job at the right end, so held jobs run next, in their order.
local moved = 0
while true do
  local job = redis.call('LMOVE', KEYS[2], KEYS[1], 'LEFT', 'RIGHT')
  if not job then break end
  moved = moved + 1
end
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('DEL', ARGV[2])
return moved
