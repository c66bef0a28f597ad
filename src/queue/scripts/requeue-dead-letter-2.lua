--[[
  Takes one entry off the dead-letter list and, when asked, queues its job again (next in line).
  KEYS[1] dead-letter list
  KEYS[2] pending list
  ARGV[1] the entry's exact JSON in the dead-letter list
  ARGV[2] the job payload to queue, or '' to discard the entry
  Returns 1 when the entry was found (and requeued or discarded), 0 when it was not there.
]]
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
if ARGV[2] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[2]) end
return 1
