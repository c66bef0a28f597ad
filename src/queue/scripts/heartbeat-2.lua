--[[
  Registers a worker and refreshes its heartbeat, together, so a reclaimer never sees a
  registered worker whose first heartbeat is not yet written.
  KEYS[1] workers set
  KEYS[2] the worker's heartbeat key
  ARGV[1] worker id
  ARGV[2] heartbeat TTL in milliseconds (a positive integer)
  Returns 1.
]]
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
