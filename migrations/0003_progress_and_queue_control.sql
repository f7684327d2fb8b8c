-- 0003_progress_and_queue_control: the progress a running job reports, and
-- per-queue settings (pause, concurrency limit across workers, rate limit).
--
-- Lock impact: ADD COLUMN without a default only changes the catalog (an
-- ACCESS EXCLUSIVE lock on pgq.jobs for an instant, no table rewrite);
-- pgq.queues and the function are new.
-- Rolling deploy: safe. Workers of the previous version neither read nor
-- write the new objects (they ignore queue settings until upgraded).

-- {"done": n, "total": n or null, "message": text or null, "updated_at": ...},
-- written by the job's holder while it runs (see pgq.context); NULL until then.
ALTER TABLE pgq.jobs ADD COLUMN IF NOT EXISTS progress jsonb;

-- One row per queue with settings; a queue without a row has none. Claims
-- read this table once per claim (never per job), and lock the row of a
-- limited queue, so that claims of that queue take turns.
CREATE TABLE pgq.queues (
    name            text PRIMARY KEY,
    -- Workers claim nothing from a paused queue; running jobs finish.
    paused          boolean NOT NULL DEFAULT false,
    -- At most this many jobs of the queue run at once, over all workers.
    max_running     integer,
    -- At most this many jobs of the queue start per second (token bucket
    -- holding up to max(1, rate) tokens: a second's worth of burst).
    rate_per_second float8,
    tokens          float8 NOT NULL DEFAULT 0,
    tokens_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT now(),

    CONSTRAINT queues_name CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    CONSTRAINT queues_max_running CHECK (max_running >= 0),
    CONSTRAINT queues_rate CHECK (rate_per_second > 0 AND rate_per_second < 'Infinity')
);

-- How many jobs each paused or limited queue may start in this claim (0 for a
-- paused one); queues without a setting are not returned (no limit).
--
-- Called by the claim statements only when such a queue exists. For a limited
-- queue it locks the queue's row until the claim commits, then counts its
-- running jobs: a plpgsql statement takes a fresh snapshot (READ COMMITTED),
-- so the count includes what the previous holder of the lock claimed, which
-- the claim statement's own, older snapshot would miss. Tokens are taken for
-- the jobs actually ready (up to the allowance), so an idle queue does not
-- waste its bucket. Rows are locked in name order: no deadlock between claims.
CREATE FUNCTION pgq.queue_allowances(served text[], task_names text[], wanted integer)
RETURNS TABLE (queue text, allowed integer)
LANGUAGE plpgsql VOLATILE ROWS 1 AS $$
DECLARE
    setting pgq.queues;
    running integer;
    ready integer;
    refilled float8;
BEGIN
    FOR setting IN
        SELECT * FROM pgq.queues AS q
        WHERE (served IS NULL OR q.name = ANY(served))
          AND (q.paused OR q.max_running IS NOT NULL OR q.rate_per_second IS NOT NULL)
        ORDER BY q.name
    LOOP
        queue := setting.name;
        IF setting.paused THEN
            allowed := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        SELECT * INTO setting FROM pgq.queues AS q WHERE q.name = setting.name FOR UPDATE;
        IF NOT FOUND OR setting.paused THEN  -- deleted or paused meanwhile
            allowed := 0;
            RETURN NEXT;
            CONTINUE;
        END IF;
        allowed := wanted;
        IF setting.max_running IS NOT NULL THEN
            SELECT count(*) INTO running FROM pgq.jobs AS j
            WHERE j.status = 'running' AND j.queue = setting.name;
            allowed := least(allowed, greatest(setting.max_running - running, 0));
        END IF;
        IF setting.rate_per_second IS NOT NULL AND allowed > 0 THEN
            refilled := least(
                greatest(setting.rate_per_second, 1.0),
                setting.tokens + setting.rate_per_second * greatest(
                    EXTRACT(EPOCH FROM clock_timestamp() - setting.tokens_at)::float8, 0));
            SELECT count(*) INTO ready FROM (
                SELECT 1 FROM pgq.jobs AS j
                WHERE j.status = 'queued' AND j.queue = setting.name AND j.run_at <= now()
                  AND j.task = ANY(task_names)
                LIMIT least(allowed, floor(refilled)::integer)
            ) AS r;
            allowed := ready;
            UPDATE pgq.queues AS q
            SET tokens = refilled - ready, tokens_at = clock_timestamp()
            WHERE q.name = setting.name;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The ready jobs a worker may claim from paused or limited queues (served:
-- NULL for every queue), locked like the claim's own scan: what the claim of
-- a worker of every queue adds to its scan of the other queues. In a function,
-- whose plans are kept per session, so that this rare case adds nothing to
-- the planning of every claim.
CREATE FUNCTION pgq.ready_in_limited_queues(
    served text[], task_names text[], wanted integer, worker uuid)
RETURNS TABLE (id bigint, priority integer, run_at timestamptz)
LANGUAGE plpgsql VOLATILE ROWS 10 AS $$
DECLARE
    allowance record;
BEGIN
    FOR allowance IN
        SELECT a.queue, a.allowed FROM pgq.queue_allowances(served, task_names, wanted) AS a
        WHERE a.allowed > 0
    LOOP
        RETURN QUERY
            SELECT j.id, j.priority, j.run_at FROM pgq.jobs AS j
            WHERE j.status = 'queued'
              AND j.queue = allowance.queue
              AND j.run_at <= now()
              AND j.task = ANY(task_names)
              AND EXISTS (SELECT 1 FROM pgq.workers AS w
                          WHERE w.id = worker AND w.expires_at > now())
            ORDER BY j.priority DESC, j.run_at, j.id
            LIMIT allowance.allowed
            FOR UPDATE OF j SKIP LOCKED;
    END LOOP;
END
$$;
