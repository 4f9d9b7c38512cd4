-- Citizens imports (the 2019 backend-school citizens API) plus insikt's
-- optional advertising channel. An import is immutable apart from PATCHes of
-- its citizens.
CREATE TABLE imports (
    import_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- Relatives live in an int[] on each citizen, in the order the client gave
-- them, and are stored on both sides (a self-relative once). Reading a whole
-- import is then one index range scan with no join or aggregation, and a
-- COPY writes one row per citizen. The application keeps the arrays mutual:
-- imports are validated whole, and PATCH locks the import row (FOR NO KEY
-- UPDATE) while it edits both sides. The primary key serves every query:
-- all of them filter on import_id, and PATCH/birthdays look up citizen_id.
CREATE TABLE citizens (
    import_id  bigint    NOT NULL REFERENCES imports (import_id) ON DELETE CASCADE,
    citizen_id integer   NOT NULL CHECK (citizen_id >= 0),
    town       text      NOT NULL,
    street     text      NOT NULL,
    building   text      NOT NULL,
    apartment  integer   NOT NULL CHECK (apartment >= 0),
    name       text      NOT NULL,
    birth_date date      NOT NULL,
    gender     text      NOT NULL CHECK (gender IN ('male', 'female')),
    channel    text      CHECK (channel <> ''),
    relatives  integer[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (import_id, citizen_id)
);
