-- Statements the benchmarks run themselves. The "ceiling" ones are the least a
-- SKIP LOCKED queue must do on pgq.jobs: no validation, no NOTIFY, no
-- fencing, no heartbeat, no result. pgq's own SQL lives in pgq/queries/.

-- name: count_jobs
SELECT count(*) AS count FROM pgq.jobs;

-- name: drain_timing
-- The drain as the database saw it: first claim to last completion.
SELECT count(*) FILTER (WHERE status = 'succeeded') AS finished,
       EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 AS seconds
FROM pgq.jobs;

-- name: server_settings
SELECT current_setting('server_version') AS server_version,
       current_setting('fsync') AS fsync,
       current_setting('synchronous_commit') AS synchronous_commit,
       current_setting('full_page_writes') AS full_page_writes,
       current_setting('wal_sync_method') AS wal_sync_method,
       current_setting('shared_buffers') AS shared_buffers,
       current_setting('max_wal_size') AS max_wal_size;

-- name: vacuum_analyze
VACUUM (ANALYZE);

-- name: checkpoint
CHECKPOINT;

-- name: ceiling_insert_job
INSERT INTO pgq.jobs (queue, task, args) VALUES ('default', %(task)s, %(args)s::jsonb)
RETURNING id;

-- name: ceiling_copy_jobs
COPY pgq.jobs (queue, task, args) FROM STDIN;

-- name: ceiling_claim_jobs
WITH ready AS MATERIALIZED (
    SELECT id FROM pgq.jobs
    WHERE status = 'queued' AND queue = 'default' AND run_at <= now()
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pgq.jobs AS j
SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    started_at = now()
FROM ready
WHERE j.id = ready.id
RETURNING j.id, j.args, j.kwargs;

-- name: ceiling_complete_jobs
UPDATE pgq.jobs SET status = 'succeeded', finished_at = now()
WHERE id = ANY(%(ids)s::bigint[]);
