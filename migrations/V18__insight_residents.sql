-- The insights' residents of an import kept in one compact row per import
-- (src/insights/residents.rs), so a cold load reads ~17 bytes a resident in
-- one value instead of aggregating the import's citizens rows. Written
-- lazily by the first load at a version, read only while `version` equals
-- the import's (a PATCH bumps it, so a stale row is simply not used and is
-- replaced by the next load). `asked_at` says which imports were asked
-- lately: a starting instance loads those first, within its budget.
CREATE TABLE insight_residents (
    import_id bigint      PRIMARY KEY REFERENCES imports (import_id) ON DELETE CASCADE,
    version   bigint      NOT NULL,
    asked_at  timestamptz,
    data      bytea       NOT NULL
);
-- Already compact: PostgreSQL's compression would only cost time on reads.
ALTER TABLE insight_residents ALTER COLUMN data SET STORAGE EXTERNAL;
CREATE INDEX insight_residents_asked ON insight_residents (asked_at DESC) WHERE asked_at IS NOT NULL;
