-- For each queue in ARGV[3..]: how many tasks wait in it and how many live
-- workers (registered, lease held) serve it. A waiting controller asks
-- only while none of its tasks ends, to tell its user that nobody will
-- run them; it reads every worker's record, as the reaper does.
local want = {}
for i = 3, #ARGV do
  want[ARGV[i]] = 0
end
for _, wid in ipairs(redis.call('SMEMBERS', K.workers())) do
  if redis.call('EXISTS', K.worker_alive(wid)) == 1 then
    local qs = redis.call('HGET', K.worker(wid), 'queues') or ''
    for q in string.gmatch(qs, '[^,]+') do
      if want[q] then
        want[q] = want[q] + 1
      end
    end
  end
end
local out = {}
for i = 3, #ARGV do
  out[#out + 1] = redis.call('LLEN', K.queue(ARGV[i]))
  out[#out + 1] = want[ARGV[i]]
end
return out
