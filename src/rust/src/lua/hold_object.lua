-- Owners of a shared object that is already stored, counted before they
-- are written (so that it cannot go in between and need no second upload),
-- or given back when their write was refused.
-- ARGV[3] SHA-256, ARGV[4] how many owners (negative: given back),
-- ARGV[5] '1' if they expire. Returns 1 if counted, 0 if there is no such
-- object (the caller uploads it).
local sha, n = ARGV[3], tonumber(ARGV[4])
if n < 0 then
  release_object(sha, -n)
  return 1
end
if redis.call('EXISTS', K.object(sha)) == 0 then
  return 0
end
hold_object(sha, n, ARGV[5] == '1', false)
return 1
