-- Collect tasks a job was told (or found) have ended: ARGV[3] fetch ('1':
-- return results too), ARGV[4] consume ('1': delete what has ended, the
-- job owns its tasks and has now received them), ARGV[5..] ids.
-- Atomic so that a task is read and deleted in one step: its result can
-- neither be lost nor delivered twice.
-- Returns {status, result or '', ...} per id (MISSING for unknown ids).
local fetch, consume = ARGV[3] == '1', ARGV[4] == '1'
local out = {}
for i = 5, #ARGV do
  local id = ARGV[i]
  local tk = K.task(id)
  local t = redis.call('HMGET', tk, 'status', 'result')
  local status = t[1] or MISSING
  out[#out + 1] = status
  if TERMINAL[status] then
    out[#out + 1] = fetch and (t[2] or '') or ''
    if consume then
      redis.call('DEL', tk)
      redis.call('HDEL', PAYLOADS, id)
    end
  else
    out[#out + 1] = ''
  end
end
return out
