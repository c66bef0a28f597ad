--[[
  Removes every job of one video from the pending lists and the dead-letter list, atomically, keeping
  the order of the others (a deleted or cancelled video's work is never done), and forgets that its
  extraction job is queued. Jobs held in workers' processing lists stay: their workers acknowledge them
  without writing (the video takes no results).
  KEYS[1] pending list of extract jobs (job JSON with a videoId)
  KEYS[2] pending list of detect jobs
  KEYS[3] pending list of versions before job kinds (detect jobs)
  KEYS[4] dead-letter list (entry JSON with job.videoId)
  KEYS[5] set of video ids whose extraction job is queued or held
  ARGV[1] the video id
  Returns the number of list entries removed. An entry that is not JSON is kept.
  One pass over each list: each list is read once and, only when it holds a match, rewritten with the
  kept entries in their order (O(n) however many match, where an LREM per match would be O(n * m)).
]]
local function video_of(payload, dead)
  local ok, decoded = pcall(cjson.decode, payload)
  if not ok or type(decoded) ~= 'table' then return nil end
  if dead then
    if type(decoded['job']) ~= 'table' then return nil end
    decoded = decoded['job']
  end
  return decoded['videoId']
end

local function discard(key, dead)
  local entries = redis.call('LRANGE', key, 0, -1)
  local kept = {}
  for _, payload in ipairs(entries) do
    if video_of(payload, dead) ~= ARGV[1] then kept[#kept + 1] = payload end
  end
  local removed = #entries - #kept
  if removed == 0 then return 0 end
  redis.call('DEL', key)
  -- RPUSH in slices: Lua's unpack has a limit on how many values it spreads.
  for first = 1, #kept, 1000 do
    redis.call('RPUSH', key, unpack(kept, first, math.min(first + 999, #kept)))
  end
  return removed
end

local removed = discard(KEYS[1], false) + discard(KEYS[2], false) + discard(KEYS[3], false) + discard(KEYS[4], true)
-- A held extraction job removes the id again when it ends; one removed here can no longer be queued twice.
redis.call('SREM', KEYS[5], ARGV[1])
return removed
