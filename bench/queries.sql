-- Statements the benchmarks run themselves. The "ceiling" ones are the least a
-- SKIP LOCKED queue must do on pgq.jobs: no validation, no NOTIFY, no
-- fencing, no heartbeat, no result. pgq's own SQL lives in pgq/queries/.

-- name: count_jobs
SELECT count(*) AS count FROM pgq.jobs;

-- name: count_finished
SELECT count(*) AS count FROM pgq.jobs WHERE status = 'succeeded';

-- name: drain_timing
-- The drain as the database saw it: first claim to last completion (of the
-- jobs started since %(since)s: history inserted beforehand is older).
SELECT count(*) AS finished,
       EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 AS seconds
FROM pgq.jobs
WHERE status = 'succeeded' AND started_at >= %(since)s;

-- name: fill_history
-- %(count)s jobs that ran and succeeded days ago, as pgq leaves them.
INSERT INTO pgq.jobs (queue, task, args, status, attempts, worker_id, run_at, created_at,
                      started_at, finished_at)
SELECT 'default', 'bench.noop', jsonb_build_array(g), 'succeeded', 1,
       '00000000-0000-0000-0000-000000000001', t, t, t, t + interval '1 millisecond'
FROM generate_series(1, %(count)s) AS g
CROSS JOIN LATERAL (SELECT now() - interval '2 days' + g * interval '10 milliseconds') AS at(t);

-- name: create_database_from
CREATE DATABASE {} TEMPLATE {};

-- name: create_database_from_file_copy
CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY;

-- name: database_now
SELECT now() AS now;

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

-- Procrastinate's tables (procrastinate 3.x): a job row keeps its final status;
-- procrastinate_events gets one row per transition (deferred, started, succeeded).

-- name: procrastinate_count_jobs
SELECT count(*) AS count FROM procrastinate_jobs;

-- name: procrastinate_count_finished
SELECT count(*) AS count FROM procrastinate_jobs WHERE status = 'succeeded';

-- name: procrastinate_drain_timing
SELECT count(*) FILTER (WHERE type = 'succeeded') AS finished,
       EXTRACT(EPOCH FROM max(at) FILTER (WHERE type = 'succeeded')
                          - min(at) FILTER (WHERE type = 'started'))::float8 AS seconds
FROM procrastinate_events
WHERE at >= %(since)s AND type IN ('started', 'succeeded');

-- name: procrastinate_fill_history
WITH job AS (
    INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
    SELECT 'default', 'noop', jsonb_build_object('n', g), 'succeeded', 1
    FROM generate_series(1, %(count)s) AS g
    RETURNING id
)
INSERT INTO procrastinate_events (job_id, type, at)
SELECT job.id, event.type::procrastinate_job_event_type,
       now() - interval '2 days' + job.id * interval '10 milliseconds' + event.offset_
FROM job
CROSS JOIN (VALUES ('deferred', interval '0'), ('started', interval '1 millisecond'),
                   ('succeeded', interval '2 milliseconds')) AS event(type, offset_);

-- PgQueuer's tables (pgqueuer 1.x): a finished job leaves the queue table;
-- pgqueuer_log keeps one row per transition (queued, picked, successful).

-- name: pgqueuer_count_jobs
SELECT count(*) AS count FROM pgqueuer;

-- name: pgqueuer_count_finished
SELECT count(*) AS count FROM pgqueuer_log WHERE status = 'successful';

-- name: pgqueuer_drain_timing
SELECT count(*) FILTER (WHERE status = 'successful') AS finished,
       EXTRACT(EPOCH FROM max(created) FILTER (WHERE status = 'successful')
                          - min(created) FILTER (WHERE status = 'picked'))::float8 AS seconds
FROM pgqueuer_log
WHERE created >= %(since)s AND status IN ('picked', 'successful');

-- name: pgqueuer_fill_history
-- Aggregated into pgqueuer_statistics long ago, as a running worker leaves them.
INSERT INTO pgqueuer_log (job_id, status, priority, entrypoint, aggregated, created)
SELECT g, event.status::pgqueuer_status, 0, 'noop', true,
       now() - interval '2 days' + g * interval '10 milliseconds' + event.offset_
FROM generate_series(1, %(count)s) AS g
CROSS JOIN (VALUES ('queued', interval '0'), ('picked', interval '1 millisecond'),
                   ('successful', interval '2 milliseconds')) AS event(status, offset_);

-- django-tasks-db's table (django-tasks-db 0.13): a task result row keeps its
-- final status and its started_at / finished_at.

-- name: django_tasks_db_count_jobs
SELECT count(*) AS count FROM django_tasks_database_dbtaskresult;

-- name: django_tasks_db_count_finished
SELECT count(*) AS count FROM django_tasks_database_dbtaskresult WHERE status = 'SUCCESSFUL';

-- name: django_tasks_db_drain_timing
SELECT count(*) AS finished,
       EXTRACT(EPOCH FROM max(finished_at) - min(started_at))::float8 AS seconds
FROM django_tasks_database_dbtaskresult
WHERE status = 'SUCCESSFUL' AND started_at >= %(since)s;

-- name: django_tasks_db_fill_history
INSERT INTO django_tasks_database_dbtaskresult (
    id, status, args_kwargs, priority, task_path, queue_name, backend_name, run_after,
    enqueued_at, started_at, finished_at, return_value, exception_class_path, traceback,
    worker_ids)
SELECT gen_random_uuid(), 'SUCCESSFUL', jsonb_build_object('args', jsonb_build_array(g),
       'kwargs', '{}'::jsonb), 0, 'bench.peers.django_tasks_app.noop', 'default', 'default',
       '9999-01-01 00:00:00+00', t, t, t + interval '1 millisecond', 'null', '', '',
       '["bench"]'
FROM generate_series(1, %(count)s) AS g
CROSS JOIN LATERAL (SELECT now() - interval '2 days' + g * interval '10 milliseconds') AS at(t);
