-- Collect tasks a job was told (or found) have ended: ARGV[3] fetch ('1':
-- return results too), ARGV[4] k, then k ids of the job's tasks it
-- received with its previous collect, deleted here (record and payload),
-- then the ids to read. Deleting only what the job confirmed it received
-- means a reply lost on the way loses no result: the task is read again.
-- Returns {status, result or '', attempt, ...} per id read (MISSING for
-- unknown ids).
local fetch = ARGV[3] == '1'
local k = tonumber(ARGV[4])
for i = 5, 4 + k do
  local tk = K.task(ARGV[i])
  local t = fields(tk)
  if t.rbig then
    drop_big(tk, 'result')
  end
  drop_payload(ARGV[i], t)
  redis.call('DEL', tk)
end
local out = {}
for i = 5 + k, #ARGV do
  local t = redis.call('HMGET', K.task(ARGV[i]), 'status', 'result', 'attempt')
  local status = t[1] or MISSING
  out[#out + 1] = status
  out[#out + 1] = (fetch and TERMINAL[status] and t[2]) or ''
  out[#out + 1] = t[3] or '0'
end
return out
