-- Retention (pgq.retention): finished jobs deleted, results cleared, in small
-- batches that each commit on their own. Every batch locks only finished rows,
-- which claims never read, and skips rows someone else holds (a retry, say)
-- instead of waiting for them.

-- name: lock_retention
-- Session lock: one pruner at a time across all workers; the others skip
-- their turn. Released by unlock_retention, or when the connection closes.
SELECT pg_try_advisory_lock(7231440317026002) AS locked;

-- name: unlock_retention
SELECT pg_advisory_unlock(7231440317026002) AS unlocked;

-- name: may_prune
-- A least-privilege worker role may not delete jobs (see `pgq grant`).
SELECT has_table_privilege('pgq.jobs', 'DELETE') AS may_delete, clock_timestamp() AS now;

-- name: delete_finished_jobs
-- One batch: the oldest jobs of one finished status that finished before
-- %(before)s, through jobs_finished_idx.
WITH doomed AS (
    SELECT id FROM pgq.jobs
    WHERE status = %(status)s::pgq.job_status AND finished_at < %(before)s
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgq.jobs AS j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT count(*) AS deleted FROM deleted;

-- name: clear_results
-- One batch of results of jobs that succeeded in [%(after)s, %(before)s);
-- the caller moves %(after)s forward to the last finished_at returned, so
-- cleared rows are not read again.
WITH doomed AS (
    SELECT id FROM pgq.jobs
    WHERE status = 'succeeded'
      AND finished_at >= %(after)s AND finished_at < %(before)s
      AND result IS NOT NULL
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE pgq.jobs AS j SET result = NULL
FROM doomed
WHERE j.id = doomed.id
RETURNING j.finished_at;
