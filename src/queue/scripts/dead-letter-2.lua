--[[
  Moves a job the worker gave up on from its processing list to the dead-letter list, atomically.
  KEYS[1] the worker's processing list
  KEYS[2] dead-letter list
  ARGV[1] the job's exact payload in the processing list
  ARGV[2] the dead-letter entry (JSON: job, error, attempts, failedAt)
  Returns 1 when moved; 0 when the job was no longer held (reclaimed meanwhile), and nothing is written.
]]
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
