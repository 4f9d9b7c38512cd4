-- Issue 32: who changed what. One row per accepted change, written in the
-- change's own transaction where it has one, so a change that rolls back
-- leaves no row and a committed one always has its row. Rows name the token
-- (never its value), the route and the ids touched; `detail` holds counts
-- and field names, never a field's value (no personal data is copied here).
-- No foreign keys: the trail outlives what it describes (an erased import).
CREATE TABLE audit (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         timestamptz NOT NULL DEFAULT now(),
    -- The token's configured name; NULL for a caller without one (open mode).
    token      text,
    method     text        NOT NULL,
    route      text        NOT NULL,
    outcome    text        NOT NULL,
    import_id  bigint,
    citizen_id integer,
    airport_id bigint,
    job        text,
    detail     jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_import_idx ON audit (import_id, id) WHERE import_id IS NOT NULL;
