-- Drop what a reference that no record holds names (a submission that was
-- refused): its chunks, or its share of an offloaded file.
-- ARGV[3] the reference.
drop_value(ARGV[3])
return 1
