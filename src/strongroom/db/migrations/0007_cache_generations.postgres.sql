-- Change counters for the read-through cache in front of a remote store: every write, rotation
-- or revocation increments its name's row (name_key '*' stands for every name), and a cached
-- entry is served only while the counters it was filled under are unchanged. Increments also
-- send pg_notify('strongroom_cache', '<schema>:<name_key>') so other processes drop entries early.
CREATE TABLE strongroom_cache_generations (
    name_key    TEXT   PRIMARY KEY,
    generation  BIGINT NOT NULL
);
