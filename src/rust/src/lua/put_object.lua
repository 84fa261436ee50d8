-- A shared object's upload, in its submission's transaction: the first
-- upload of a content stays, a later one of the same content is dropped
-- (its chunks too), and the tasks that refer to it are counted. It lives
-- for good while a task that never expires refers to it, else as long as
-- a job's keys (renewed by each new reference).
-- ARGV[3] SHA-256, ARGV[4] the value (sealed) or a reference to its
-- chunks, ARGV[5] how many tasks refer to it, ARGV[6] '1' if they expire.
local sha, stored, n, expire = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6] == '1'
local ok = K.object(sha)
local fresh = redis.call('EXISTS', ok) == 0
if fresh then
  redis.call('SET', ok, stored)
else
  local mine = big_chunks(stored)
  if mine then
    unlink_all(mine)
  end
end
redis.call('HINCRBY', K.objects(), sha, n)
local keys = {ok}
for _, k in ipairs(key_chunks(ok) or {}) do
  keys[#keys + 1] = k
end
if not expire then
  for _, k in ipairs(keys) do
    redis.call('PERSIST', k)
  end
elseif fresh or redis.call('TTL', ok) > 0 then
  for _, k in ipairs(keys) do
    redis.call('EXPIRE', k, JOB_TTL_S)
  end
end
return 1
