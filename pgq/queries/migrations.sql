-- The bookkeeping of applied schema migrations.

-- name: lock_migrations
-- Serialises concurrent `pgq migrate` runs; released at commit.
SELECT pg_advisory_xact_lock(7231440317026001);

-- name: create_migrations_table
CREATE SCHEMA IF NOT EXISTS pgq;
CREATE TABLE IF NOT EXISTS pgq.migrations (
    name       text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT name FROM pgq.migrations ORDER BY name;

-- name: record_migration
INSERT INTO pgq.migrations (name) VALUES (%(name)s);

-- name: schema_exists
SELECT to_regclass('pgq.migrations') IS NOT NULL AS exists;
