-- The message a sink started for an incident of an alert group (a Slack thread): later
-- notifications of the group (repeats, partial resolutions, the resolution) reply in it. The full
-- resolution closes it, so the group firing again starts a new incident. At most one open thread per
-- group and sink: the first record wins.
CREATE TABLE threads (
    group_key  TEXT NOT NULL,
    sink       TEXT NOT NULL,
    channel    TEXT NOT NULL,
    ts         TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    closed_at  BIGINT
);
CREATE UNIQUE INDEX threads_open ON threads (group_key, sink) WHERE closed_at IS NULL;
CREATE INDEX threads_created ON threads (created_at);
