-- A worker lost its connection in the middle of a step, or while it was
-- blocked waiting for work, and cannot know what the server did: give back
-- everything it holds (see release_worker in common.lua) before it claims
-- again. ARGV[3] wid, ARGV[4] outcome.
return release_worker(ARGV[3], ARGV[4])
