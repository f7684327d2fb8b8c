-- Statements pgq_django runs on Django's connection (pgq's own are in pgq/queries).

-- name: tables_schema
-- Where an unqualified CREATE TABLE (every Django migration) puts its table:
-- the first existing schema on the search_path. A role named "pgq" gets
-- schema pgq there, through the default search_path's "$user".
SELECT current_schema() AS schema, current_user AS role;
