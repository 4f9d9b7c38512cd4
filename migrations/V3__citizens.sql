-- Citizens imports (the 2019 backend-school citizens API) plus insikt's
-- optional advertising channel. An import is immutable apart from PATCHes of
-- its citizens; relatives are stored in both directions (a self-relative once).
CREATE TABLE imports (
    import_id  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE citizens (
    import_id  bigint  NOT NULL REFERENCES imports (import_id) ON DELETE CASCADE,
    citizen_id integer NOT NULL CHECK (citizen_id >= 0),
    town       text    NOT NULL,
    street     text    NOT NULL,
    building   text    NOT NULL,
    apartment  integer NOT NULL CHECK (apartment >= 0),
    name       text    NOT NULL,
    birth_date date    NOT NULL,
    gender     text    NOT NULL CHECK (gender IN ('male', 'female')),
    channel    text,
    PRIMARY KEY (import_id, citizen_id)
);

CREATE TABLE relations (
    import_id   bigint  NOT NULL,
    citizen_id  integer NOT NULL,
    relative_id integer NOT NULL,
    PRIMARY KEY (import_id, citizen_id, relative_id),
    FOREIGN KEY (import_id, citizen_id) REFERENCES citizens (import_id, citizen_id) ON DELETE CASCADE,
    FOREIGN KEY (import_id, relative_id) REFERENCES citizens (import_id, citizen_id) ON DELETE CASCADE
);
