-- 0002_schedules_and_retention: periodic schedules, and an index for pruning
-- finished jobs.
--
-- Lock impact: pgq.schedules is new. The index on pgq.jobs is built under a
-- SHARE lock: enqueues and outcome writes wait while it is built (about a
-- second per million rows). On a large table, build it first by hand with
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS jobs_finished_idx ON pgq.jobs
--       (status, finished_at) WHERE status IN ('succeeded', 'failed', 'cancelled');
-- and this migration leaves it as it is.
-- Rolling deploy: safe. Workers of the previous version neither read nor
-- write the new table, and the index only adds a way to find finished jobs.

-- One row per periodic schedule (App.periodic). last_tick only moves forward,
-- by compare-and-set in the transaction that enqueues the tick's job, so that
-- however many workers run the scheduler each tick gets exactly one job.
CREATE TABLE pgq.schedules (
    name        text PRIMARY KEY,
    task        text NOT NULL,
    cron        text NOT NULL,
    timezone    text NOT NULL,
    -- The latest tick handled: enqueued, or skipped as too late, or the tick
    -- already due when the schedule was first seen (which gets no job).
    last_tick   timestamptz NOT NULL,
    -- The job of last_tick (NULL: none was enqueued for it). Not a foreign
    -- key: retention deletes finished jobs.
    last_job_id bigint,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Retention deletes finished jobs of one status, oldest first, in small
-- batches: this index finds them without reading the rest of the table.
-- Waiting and running jobs are not in it.
CREATE INDEX IF NOT EXISTS jobs_finished_idx ON pgq.jobs (status, finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
