-- Statements on pgq.workers: registration, heartbeats, lease recovery.

-- name: register_worker
INSERT INTO pgq.workers (id, hostname, pid, queues, tasks, concurrency, expires_at)
VALUES (%(worker_id)s, %(hostname)s, %(pid)s, %(queues)s, %(tasks)s, %(concurrency)s,
        now() + make_interval(secs => %(lease_seconds)s))
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), expires_at = excluded.expires_at;

-- name: heartbeat_worker
-- Extends this worker's lease and returns which of its jobs were asked to
-- cancel. alive = false means another worker declared it dead.
WITH beat AS (
    UPDATE pgq.workers
    SET heartbeat_at = now(), expires_at = now() + make_interval(secs => %(lease_seconds)s)
    WHERE id = %(worker_id)s
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM beat) AS alive,
       ARRAY(SELECT id FROM pgq.jobs
             WHERE status = 'running' AND worker_id = %(worker_id)s AND cancel_requested
       ) AS cancel_ids;

-- name: recover_expired_jobs
-- Deletes workers whose lease expired and returns their running jobs to the
-- queue, the attempt counted; out of attempts, a job fails. Running jobs whose
-- worker row is gone are recovered the same way, and so are those of the
-- identities in %(abandoned)s: a worker that lost its lease gives its own
-- jobs back without waiting for the expiry. Safe to run from every worker at
-- once: row locks make each job move exactly once.
WITH dead AS (
    DELETE FROM pgq.workers
    WHERE expires_at < now() OR id = ANY(%(abandoned)s::uuid[])
    RETURNING id
)
UPDATE pgq.jobs AS j
SET status = CASE
        WHEN j.cancel_requested THEN 'cancelled'::pgq.job_status
        WHEN j.attempts >= j.max_attempts THEN 'failed'
        ELSE 'queued'
    END,
    finished_at = CASE
        WHEN j.cancel_requested OR j.attempts >= j.max_attempts THEN now()
    END,
    run_at = now(),
    last_error = 'worker ' || j.worker_id || ' stopped sending heartbeats while it held attempt '
        || j.attempts || '; the job was recovered'
WHERE j.status = 'running'
  AND (j.worker_id IN (SELECT id FROM dead)
       OR j.worker_id = ANY(%(abandoned)s::uuid[])
       -- started_at: a worker that registered and claimed after this statement's
       -- snapshot is missing from it, but is not an orphan.
       OR (NOT EXISTS (SELECT 1 FROM pgq.workers AS w WHERE w.id = j.worker_id)
           AND j.started_at < now()))
RETURNING j.id, j.status::text AS status, j.queue;

-- name: deregister_worker
DELETE FROM pgq.workers WHERE id = %(worker_id)s;

-- name: list_workers
SELECT *, expires_at > now() AS alive FROM pgq.workers ORDER BY started_at;

-- name: listen
LISTEN pgq;

-- name: ping
-- Proves a quiet connection still reaches the server.
SELECT 1 AS alive;

-- name: live_task_names
-- Task names some live worker can run: what `pgq enqueue` checks without --app.
SELECT DISTINCT unnest(tasks) AS task FROM pgq.workers WHERE expires_at > now();
