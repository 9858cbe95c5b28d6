-- What on-call engineers said about an analysis (the Right / Wrong buttons in Slack): one row per
-- press, kept with the job and purged with it.
CREATE TABLE feedback (
    job_id    TEXT NOT NULL,
    verdict   TEXT NOT NULL,
    user_name TEXT NOT NULL,
    at        BIGINT NOT NULL
);
CREATE INDEX feedback_job ON feedback (job_id);
