--[[
  A worker shutting down hands back the jobs it holds and unregisters, whatever its heartbeat says.
  KEYS[1] workers set
  KEYS[2] the worker's heartbeat key
  KEYS[3] the worker's processing list
  KEYS[4] pending list
  ARGV[1] worker id
  Returns the number of jobs handed back.
]]
-- Same order as reclaim-4.lua: the held jobs go to the consuming (right) end, oldest last moved.
local moved = 0
while redis.call('LMOVE', KEYS[3], KEYS[4], 'LEFT', 'RIGHT') do
  moved = moved + 1
end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
return moved
