-- Queue control (pgq.queues: pause, limits), moving jobs between queues, and
-- the progress running jobs report.

-- name: set_job_progress
-- Only the holder of the current attempt writes: a worker that lost the job
-- (its lease lapsed, the job ran again elsewhere) matches no row.
UPDATE pgq.jobs
SET progress = jsonb_build_object(
    'done', %(done)s::float8, 'total', %(total)s::float8, 'message', %(message)s::text,
    'updated_at', clock_timestamp())
WHERE id = %(id)s
  AND status = 'running'
  AND worker_id = %(worker_id)s
  AND attempts = %(attempts)s
RETURNING id;

-- name: set_queue_paused
INSERT INTO pgq.queues AS q (name, paused)
VALUES (%(name)s, %(paused)s)
ON CONFLICT (name) DO UPDATE SET paused = excluded.paused, updated_at = now()
RETURNING q.*;

-- name: set_queue_limits
-- Each limit is changed only when its own flag says so; NULL clears it. A new
-- rate starts with a full bucket.
INSERT INTO pgq.queues AS q (name, max_running, rate_per_second, tokens)
VALUES (%(name)s, %(max_running)s, %(rate_per_second)s,
        greatest(COALESCE(%(rate_per_second)s::float8, 0), 1))
ON CONFLICT (name) DO UPDATE SET
    max_running = CASE WHEN %(set_max_running)s THEN excluded.max_running
                       ELSE q.max_running END,
    rate_per_second = CASE WHEN %(set_rate)s THEN excluded.rate_per_second
                           ELSE q.rate_per_second END,
    tokens = CASE WHEN %(set_rate)s THEN excluded.tokens ELSE q.tokens END,
    tokens_at = CASE WHEN %(set_rate)s THEN clock_timestamp() ELSE q.tokens_at END,
    updated_at = now()
RETURNING q.*;

-- name: list_queues
-- Every queue that has settings or jobs waiting or running, with those counts.
SELECT names.name,
       COALESCE(q.paused, false) AS paused, q.max_running, q.rate_per_second,
       (SELECT count(*) FROM pgq.jobs AS j
        WHERE j.queue = names.name AND j.status = 'queued') AS queued,
       (SELECT count(*) FROM pgq.jobs AS j
        WHERE j.queue = names.name AND j.status = 'running') AS running
FROM (SELECT name FROM pgq.queues
      UNION
      SELECT DISTINCT queue FROM pgq.jobs WHERE status IN ('queued', 'running')) AS names
LEFT JOIN pgq.queues AS q ON q.name = names.name
ORDER BY names.name;

-- name: move_jobs
-- Only waiting jobs move; a running job stays where it is. NOTIFY wakes the
-- workers of the target queue at commit.
WITH moved AS (
    UPDATE pgq.jobs
    SET queue = %(to_queue)s
    WHERE status = 'queued'
      AND queue = %(from_queue)s
      AND (%(task)s::text IS NULL OR task = %(task)s::text)
      AND (%(ids)s::bigint[] IS NULL OR id = ANY(%(ids)s::bigint[]))
    RETURNING id
), notified AS (
    SELECT pg_notify('pgq', %(to_queue)s) WHERE EXISTS (SELECT 1 FROM moved)
)
SELECT (SELECT COALESCE(array_agg(id ORDER BY id), '{}') FROM moved) AS ids,
       (SELECT count(*) FROM notified) AS notified;
