-- A resolved incident keeps its thread open (resolved_at set) instead of closing it: the group
-- firing again within `notify.flap_window_secs` reuses the message and thread ("flapping ×N"); firing
-- again later closes it and starts a new one.
ALTER TABLE threads ADD COLUMN resolved_at BIGINT;
-- A group's resolutions and firings in time order, to tell whether it flaps.
CREATE INDEX jobs_group ON jobs (group_key, status, created_at);
