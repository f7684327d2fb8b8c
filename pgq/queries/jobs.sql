-- Every statement pgq runs against pgq.jobs. Parameters are always bound,
-- never formatted in. "-- name:" starts a query; the loader keys them by name.

-- name: insert_job
-- One job; a live job with the same unique key wins and nothing is inserted.
-- The NOTIFY is delivered at commit, and PostgreSQL folds identical ones
-- in a transaction into one, so a batch of enqueues wakes workers once per queue.
WITH job AS (
    INSERT INTO pgq.jobs (queue, task, args, kwargs, priority, max_attempts, run_at, unique_key)
    VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(kwargs)s::jsonb, %(priority)s,
            %(max_attempts)s,
            COALESCE(%(run_at)s::timestamptz, now() + make_interval(secs => %(delay)s)),
            %(unique_key)s)
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL AND status IN ('queued', 'running')
    DO NOTHING
    RETURNING *
)
SELECT job.* FROM job CROSS JOIN LATERAL pg_notify('pgq', job.queue);

-- name: get_live_job_by_unique_key
SELECT * FROM pgq.jobs
WHERE unique_key = %(unique_key)s AND status IN ('queued', 'running');

-- name: insert_jobs
-- Many jobs in one statement, from one JSON array (as fast as COPY, which
-- cannot return the ids it generates). Ids follow the order of the array; one
-- NOTIFY per queue.
WITH job AS (
    INSERT INTO pgq.jobs (queue, task, args, kwargs, priority, max_attempts, run_at)
    SELECT j.queue, j.task, j.args, j.kwargs, j.priority, j.max_attempts,
           COALESCE(j.run_at, now() + make_interval(secs => j.delay))
    FROM ROWS FROM (
        json_to_recordset(%(jobs)s::json)
            AS (queue text, task text, args jsonb, kwargs jsonb, priority integer,
                max_attempts integer, run_at timestamptz, delay float8)
    ) WITH ORDINALITY AS j(queue, task, args, kwargs, priority, max_attempts, run_at, delay, n)
    ORDER BY j.n
    RETURNING id, queue
), notified AS (
    SELECT pg_notify('pgq', queue) FROM (SELECT DISTINCT queue FROM job) AS queues
)
SELECT (SELECT array_agg(id ORDER BY id) FROM job) AS ids,
       (SELECT count(*) FROM notified) AS queues;

-- name: notify_queue
SELECT pg_notify('pgq', %(queue)s);

-- name: get_job
SELECT * FROM pgq.jobs WHERE id = %(id)s;

-- name: get_jobs
SELECT * FROM pgq.jobs WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id;

-- name: claim_jobs
-- Takes up to %(limit)s ready jobs of the given queues, highest priority first,
-- then oldest. SKIP LOCKED lets many workers claim at once without waiting on
-- each other; MATERIALIZED makes sure the locking subquery runs exactly once.
-- Each queue is read on its own, in jobs_claim_idx order: `queue = ANY(...)`
-- cannot use that order, and would walk other queues' backlogs instead.
-- Paused and limited queues (pgq.queues) take what queue_allowances allows;
-- it is called only if one of the served queues has a setting, found by one
-- look-up per claim (never per job).
WITH allowance AS MATERIALIZED (
    SELECT a.queue, a.allowed
    FROM pgq.queue_allowances(%(queues)s::text[], %(tasks)s::text[], %(limit)s::integer) AS a
    WHERE EXISTS (SELECT 1 FROM pgq.queues AS q
                  WHERE q.name = ANY(%(queues)s::text[])
                    AND (q.paused OR q.max_running IS NOT NULL OR q.rate_per_second IS NOT NULL))
), ready AS MATERIALIZED (
    SELECT candidate.id
    FROM unnest(%(queues)s::text[]) AS served(queue)
    CROSS JOIN LATERAL (
        SELECT id, priority, run_at FROM pgq.jobs
        WHERE status = 'queued'
          AND queue = served.queue
          AND run_at <= now()
          AND task = ANY(%(tasks)s::text[])
          -- A worker declared dead must re-register before it claims again, and
          -- clock_timestamp() checks a claim that waited on a lock as of now.
          AND EXISTS (SELECT 1 FROM pgq.workers
                      WHERE id = %(worker_id)s AND expires_at > clock_timestamp())
        ORDER BY priority DESC, run_at, id
        LIMIT COALESCE((SELECT allowed FROM allowance WHERE allowance.queue = served.queue),
                       %(limit)s)
        FOR UPDATE SKIP LOCKED
    ) AS candidate
    ORDER BY candidate.priority DESC, candidate.run_at, candidate.id
    LIMIT %(limit)s
)
UPDATE pgq.jobs AS j
SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    started_at = now(), finished_at = NULL, progress = NULL
FROM ready
WHERE j.id = ready.id
RETURNING j.*;

-- name: claim_jobs_any_queue
-- Queues without settings in one scan of jobs_claim_any_queue_idx; paused and
-- limited ones (rare) are left out of it, and what their allowances permit is
-- added by a function (planned once per session: nothing added to the planning
-- of every claim but a function call), only if such a queue exists.
WITH free AS MATERIALIZED (
    SELECT id, priority, run_at FROM pgq.jobs
    WHERE status = 'queued'
      AND run_at <= now()
      AND task = ANY(%(tasks)s::text[])
      AND queue <> ALL(ARRAY(SELECT name FROM pgq.queues
                             WHERE paused OR max_running IS NOT NULL OR rate_per_second IS NOT NULL))
      -- A worker declared dead must re-register before it claims again, and
      -- clock_timestamp() checks a claim that waited on a lock as of now.
      AND EXISTS (SELECT 1 FROM pgq.workers
                  WHERE id = %(worker_id)s AND expires_at > clock_timestamp())
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), ready AS MATERIALIZED (
    SELECT id FROM (
        SELECT * FROM free
        UNION ALL
        SELECT * FROM pgq.ready_in_limited_queues(
            NULL, %(tasks)s::text[], %(limit)s::integer, %(worker_id)s::uuid)
        WHERE EXISTS (SELECT 1 FROM pgq.queues
                      WHERE paused OR max_running IS NOT NULL OR rate_per_second IS NOT NULL)
    ) AS candidate
    ORDER BY priority DESC, run_at, id
    LIMIT %(limit)s
)
UPDATE pgq.jobs AS j
SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
    started_at = now(), finished_at = NULL, progress = NULL
FROM ready
WHERE j.id = ready.id
RETURNING j.*;

-- name: next_run_at
-- Seconds until the next waiting job of these queues is ready (NULL: none
-- waits), by the database's clock so that client clock skew does not matter.
SELECT EXTRACT(EPOCH FROM min(run_at) - now())::float8 AS due_in FROM pgq.jobs
WHERE status = 'queued' AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  AND task = ANY(%(tasks)s::text[])
  -- Polling a paused queue would only find it paused again.
  AND queue <> ALL(ARRAY(SELECT name FROM pgq.queues WHERE paused));

-- name: finish_jobs
-- Records the outcome of many jobs in one statement. Only the holder of the
-- current attempt may write: a worker that lost its lease matches no row.
-- A retry of a job whose cancellation was requested ends it cancelled instead.
UPDATE pgq.jobs AS j
SET status = CASE
        WHEN o.status = 'queued' AND j.cancel_requested THEN 'cancelled'
        ELSE o.status::pgq.job_status
    END,
    result = o.result::jsonb,
    last_error = COALESCE(o.error, j.last_error),
    run_at = CASE WHEN o.status = 'queued'
        THEN now() + make_interval(secs => o.retry_in) ELSE j.run_at END,
    finished_at = CASE WHEN o.status = 'queued' AND NOT j.cancel_requested
        THEN NULL ELSE now() END
-- The batch arrives as one JSON array: one parameter to encode instead of
-- seven arrays (which cost the worker more CPU than the statement itself).
FROM json_to_recordset(%(outcomes)s::json)
    AS o(id bigint, worker_id uuid, attempts integer, status text, result text, error text,
         retry_in float8)
WHERE j.id = o.id
  AND j.status = 'running'
  AND j.worker_id = o.worker_id
  AND j.attempts = o.attempts
RETURNING j.id;

-- name: release_jobs
-- A stopping worker hands back jobs it could not finish; the interrupted
-- attempt is not held against the job.
UPDATE pgq.jobs
SET status = CASE WHEN cancel_requested THEN 'cancelled'::pgq.job_status ELSE 'queued' END,
    attempts = attempts - 1,
    finished_at = CASE WHEN cancel_requested THEN now() END,
    run_at = now()
WHERE id = ANY(%(ids)s::bigint[])
  AND status = 'running'
  AND worker_id = %(worker_id)s
RETURNING id;

-- name: release_unknown_jobs
-- After a lost connection: jobs this worker claimed but never received (the
-- claim committed, its reply was lost) go back to the queue.
UPDATE pgq.jobs
SET status = 'queued', attempts = attempts - 1, run_at = now()
WHERE worker_id = %(worker_id)s
  AND status = 'running'
  AND id <> ALL(%(known_ids)s::bigint[])
RETURNING id;

-- name: retry_jobs
-- Failed or cancelled jobs go back to the queue with a fresh attempt budget.
UPDATE pgq.jobs
SET status = 'queued', attempts = 0, run_at = now(), finished_at = NULL,
    started_at = NULL, cancel_requested = false, result = NULL
WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('failed', 'cancelled')
  -- A newer live job holds the same unique key: this one stays where it is.
  AND NOT EXISTS (SELECT 1 FROM pgq.jobs AS live
                  WHERE live.unique_key = pgq.jobs.unique_key
                    AND live.status IN ('queued', 'running'))
RETURNING id, queue;

-- name: cancel_jobs
-- Queued jobs are cancelled at once; running ones get a request that their
-- worker passes on to the task.
UPDATE pgq.jobs
SET status = CASE WHEN status = 'queued' THEN 'cancelled'::pgq.job_status ELSE status END,
    finished_at = CASE WHEN status = 'queued' THEN now() ELSE finished_at END,
    cancel_requested = (status = 'running')
WHERE id = ANY(%(ids)s::bigint[]) AND status IN ('queued', 'running')
RETURNING id, status;

-- name: list_jobs
SELECT * FROM pgq.jobs
WHERE (%(status)s::pgq.job_status IS NULL OR status = %(status)s::pgq.job_status)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s::text)
  AND (%(task)s::text IS NULL OR task = %(task)s::text)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: queue_status
-- Counts per queue and status, and how long the oldest ready job has waited.
SELECT queue, status::text AS status, count(*) AS count,
       EXTRACT(EPOCH FROM now() - min(run_at) FILTER (
           WHERE status = 'queued' AND run_at <= now())) AS oldest_ready_age,
       count(*) FILTER (WHERE status = 'queued' AND run_at > now()) AS scheduled
FROM pgq.jobs
GROUP BY queue, status
ORDER BY queue, status;

-- name: orphaned_tasks
-- Waiting jobs whose task no live worker has registered: they wait until a
-- worker that knows the task starts (or an operator cancels them).
SELECT j.queue, j.task, count(*) AS count
FROM pgq.jobs AS j
WHERE j.status = 'queued'
  AND NOT EXISTS (
      SELECT 1 FROM pgq.workers AS w
      WHERE w.expires_at > now()
        AND j.task = ANY(w.tasks)
        AND (w.queues IS NULL OR j.queue = ANY(w.queues)))
GROUP BY j.queue, j.task
ORDER BY j.queue, j.task;

-- name: queue_overview
-- One row per queue with work waiting, running or finished lately. Each part
-- reads an index that holds only what it counts, never the whole history:
-- waiting jobs through jobs_claim_idx, running ones through
-- jobs_running_worker_idx, recent outcomes through jobs_finished_idx (status,
-- finished_at). Succeeded jobs are counted over one minute only: at thousands
-- a second, an hour of them is millions of rows.
WITH waiting AS (
    SELECT queue,
           count(*) FILTER (WHERE run_at <= now()) AS queued,
           count(*) FILTER (WHERE run_at > now()) AS scheduled,
           EXTRACT(EPOCH FROM now() - min(run_at) FILTER (WHERE run_at <= now()))::float8
               AS oldest_waiting_s
    FROM pgq.jobs WHERE status = 'queued'
    GROUP BY queue
), running AS (
    SELECT queue, count(*) AS running FROM pgq.jobs WHERE status = 'running' GROUP BY queue
), failed AS (
    SELECT queue, count(*) AS failed_last_hour FROM pgq.jobs
    WHERE status = 'failed' AND finished_at > now() - interval '1 hour'
    GROUP BY queue
), succeeded AS (
    SELECT queue, count(*) AS succeeded_last_minute FROM pgq.jobs
    WHERE status = 'succeeded' AND finished_at > now() - interval '1 minute'
    GROUP BY queue
)
SELECT queue,
       COALESCE(queued, 0) AS queued,
       COALESCE(scheduled, 0) AS scheduled,
       COALESCE(running, 0) AS running,
       COALESCE(failed_last_hour, 0) AS failed_last_hour,
       COALESCE(succeeded_last_minute, 0) AS succeeded_last_minute,
       oldest_waiting_s
FROM waiting
FULL JOIN running USING (queue)
FULL JOIN failed USING (queue)
FULL JOIN succeeded USING (queue)
ORDER BY queue;
