--[[
  Moves the jobs of dead workers (heartbeat key gone) back to the front of pending, so they run next,
  and unregisters those workers. Atomic, so concurrent reclaimers never move a job twice.
  KEYS[1] pending list
  ARGV[1] workers set key
  ARGV[2] processing-list key prefix (worker id appended)
  ARGV[3] heartbeat key prefix (worker id appended)
  Returns the number of jobs moved.
  Keys are derived from the workers set inside the script; this is not cluster-safe, which the
  design accepts (one Redis, sharded by prefix at most).
]]
-- Workers consume pending from the right. Moving the newest held job (left) first and pushing each
-- to the right leaves the oldest held job at the right end, so held jobs run next, in their order.
local moved = 0
local workers = redis.call('SMEMBERS', ARGV[1])
for _, worker in ipairs(workers) do
  if redis.call('EXISTS', ARGV[3] .. worker) == 0 then
    local processing = ARGV[2] .. worker
    while true do
      local job = redis.call('LMOVE', processing, KEYS[1], 'LEFT', 'RIGHT')
      if not job then break end
      moved = moved + 1
    end
    redis.call('SREM', ARGV[1], worker)
  end
end
return moved
