-- A shared object's upload, in its submission's transaction: the first
-- upload of a content stays, a later one of the same content is dropped
-- (its chunks too), and its owners are counted (see hold_object).
-- ARGV[3] SHA-256, ARGV[4] the value (sealed) or a reference to its
-- chunks, ARGV[5] how many owners refer to it, ARGV[6] '1' if they expire.
local sha, stored = ARGV[3], ARGV[4]
local ok = K.object(sha)
local fresh = redis.call('EXISTS', ok) == 0
if fresh then
  redis.call('SET', ok, stored)
else
  drop_value(stored)
end
hold_object(sha, tonumber(ARGV[5]), ARGV[6] == '1', fresh)
return 1
