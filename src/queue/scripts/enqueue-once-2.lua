--[[
  Queues a video's extraction job unless one is already queued or held, atomically: the upload
  endpoint and the sweep for uploads whose process died before publishing may both try.
  KEYS[1] set of video ids whose extraction job is queued or held
  KEYS[2] pending list of extract jobs
  ARGV[1] video id
  ARGV[2] the job payload
  Returns 1 when queued, 0 when the video already had one.
]]
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[2])
return 1
