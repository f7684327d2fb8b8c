-- Retention (pgq.retention): finished jobs deleted, results cleared, in small
-- batches that each commit on their own. Every batch locks only finished rows,
-- which claims never read, and skips rows someone else holds (a retry, say)
-- instead of waiting for them.
--
-- With %(exclusive)s, a batch first takes the pruners' advisory lock for its
-- own transaction (no session state, so it works through a transaction-mode
-- pooler): held = false means another worker's batch is running, and the
-- batch does nothing. The CTE `turn` is evaluated once (it is volatile).

-- name: may_prune
-- A least-privilege worker role may not delete jobs (see `pgq grant`).
SELECT has_table_privilege('pgq.jobs', 'DELETE') AS may_delete, clock_timestamp() AS now;

-- name: delete_finished_jobs
-- One batch: the oldest jobs of one finished status that finished before
-- %(before)s, through jobs_finished_idx.
WITH turn AS (
    SELECT NOT %(exclusive)s OR pg_try_advisory_xact_lock(7231440317026002) AS held
), doomed AS (
    SELECT id FROM pgq.jobs
    WHERE status = %(status)s::pgq.job_status AND finished_at < %(before)s
      AND (SELECT held FROM turn)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), deleted AS (
    DELETE FROM pgq.jobs AS j USING doomed WHERE j.id = doomed.id RETURNING 1
)
SELECT (SELECT held FROM turn) AS held, count(*) AS deleted FROM deleted;

-- name: clear_results
-- One batch of results of jobs that succeeded in [%(after)s, %(before)s);
-- the caller moves %(after)s forward to the last finished_at cleared, so
-- cleared rows are not read again.
WITH turn AS (
    SELECT NOT %(exclusive)s OR pg_try_advisory_xact_lock(7231440317026002) AS held
), doomed AS (
    SELECT id FROM pgq.jobs
    WHERE status = 'succeeded'
      AND finished_at >= %(after)s AND finished_at < %(before)s
      AND result IS NOT NULL
      AND (SELECT held FROM turn)
    ORDER BY finished_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), cleared AS (
    UPDATE pgq.jobs AS j SET result = NULL
    FROM doomed
    WHERE j.id = doomed.id
    RETURNING j.finished_at
)
SELECT (SELECT held FROM turn) AS held, count(*) AS cleared, max(finished_at) AS last
FROM cleared;
