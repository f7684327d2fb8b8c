-- Periodic schedules (pgq.periodic): the scheduler that runs in every worker.

-- name: database_now
-- The database's clock: every worker computes ticks by the same one.
SELECT clock_timestamp() AS now;

-- name: register_schedule
-- First sight of a schedule: last_tick starts at the tick already due, which
-- gets no job (a new schedule starts with its next tick). A changed definition
-- moves last_tick forward the same way, so that the ticks of the old
-- definition are not caught up under the new one. An unchanged one is left
-- alone (no write when every worker starts).
INSERT INTO pgq.schedules AS s (name, task, cron, timezone, last_tick)
VALUES (%(name)s, %(task)s, %(cron)s, %(timezone)s, %(baseline)s)
ON CONFLICT (name) DO UPDATE
SET task = excluded.task, cron = excluded.cron, timezone = excluded.timezone,
    last_tick = GREATEST(s.last_tick, excluded.last_tick), updated_at = now()
WHERE (s.task, s.cron, s.timezone) IS DISTINCT FROM (excluded.task, excluded.cron, excluded.timezone);

-- name: claim_schedule_tick
-- Moves a schedule to a tick it has not reached yet; the caller enqueues the
-- tick's job in the same transaction. Workers that race for one tick queue on
-- the row lock, then find last_tick already there: one row for one of them.
-- (A row deleted by hand is inserted again.)
INSERT INTO pgq.schedules AS s (name, task, cron, timezone, last_tick)
VALUES (%(name)s, %(task)s, %(cron)s, %(timezone)s, %(tick)s)
ON CONFLICT (name) DO UPDATE
SET last_tick = excluded.last_tick, last_job_id = NULL, updated_at = now()
WHERE s.last_tick < excluded.last_tick
RETURNING s.name;

-- name: record_schedule_job
UPDATE pgq.schedules SET last_job_id = %(job_id)s WHERE name = %(name)s;

-- name: list_schedules
SELECT * FROM pgq.schedules ORDER BY name;
