-- Record results of tasks a worker ran (first result wins, see common.lua).
-- Used by the worker's side thread when it ends a stuck task itself.
-- ARGV[3] wid, then (id, status, result) triples. Returns accepted flags.
local wid = ARGV[3]
local out = {}
for i = 4, #ARGV, 3 do
  out[#out + 1] = complete(wid, ARGV[i], ARGV[i + 1], ARGV[i + 2], '')
end
return out
