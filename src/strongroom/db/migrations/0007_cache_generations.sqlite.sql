-- Change counters for the read-through cache in front of a remote store: every write, rotation
-- or revocation increments its name's row (name_key '*' stands for every name), and a cached
-- entry is served only while the counters it was filled under are unchanged.
CREATE TABLE strongroom_cache_generations (
    name_key    TEXT    PRIMARY KEY,
    generation  INTEGER NOT NULL
);
