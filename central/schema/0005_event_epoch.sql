-- The unit's outbox epoch (issue #13): `seq` counts from 1 within `ep`, a random id the
-- unit's outbox picks when it is created (a re-imaged unit starts a new one). NULL: an event
-- from before epochs. Sequence accounting (central/queries.py `stats`) groups by (dev, ep).
ALTER TABLE events ADD COLUMN ep bigint;
CREATE INDEX events_dev_ep_seq ON events (dev, ep, seq);
