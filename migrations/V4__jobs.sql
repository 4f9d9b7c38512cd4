-- Statement streams: one job per import (named by the import's partition
-- hash), the statements it stored, what it could not accept, and how far it
-- has consumed. PostgreSQL is the source of truth for job state; offsets are
-- written in the same transaction as the statements (exactly-once effect).
CREATE TABLE jobs (
    name        text        PRIMARY KEY,
    import_id   bigint      NOT NULL UNIQUE REFERENCES imports (import_id) ON DELETE CASCADE,
    topic       text        NOT NULL,
    -- pending until the topic exists; then what the owning instance reports.
    state       text        NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'running', 'stopped', 'expired', 'failed')),
    -- What an operator asked for (POST /jobs/{name}/stop|start); survives restarts.
    desired     text        NOT NULL DEFAULT 'running' CHECK (desired IN ('running', 'stopped')),
    topic_ready boolean     NOT NULL DEFAULT false,
    owner       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    expires_at  timestamptz NOT NULL,
    last_error  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX jobs_state_idx ON jobs (state);

-- The next offset to read per partition, written with each batch.
CREATE TABLE job_offsets (
    job         text    NOT NULL REFERENCES jobs (name) ON DELETE CASCADE,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (job, partition)
);

-- No foreign keys: the per-row checks halved the job's throughput, and the
-- job already checks every message against its import's (immutable) citizens.
CREATE TABLE statements (
    import_id    bigint           NOT NULL,
    statement_id text             NOT NULL CHECK (statement_id <> ''),
    citizen_id   integer          NOT NULL,
    course       text             NOT NULL,
    channel      text,
    score        double precision NOT NULL,
    text         text             NOT NULL,
    ts           timestamptz      NOT NULL,
    -- Where the first copy was read from, for audits.
    kafka_partition integer       NOT NULL,
    kafka_offset    bigint        NOT NULL,
    stored_at    timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (import_id, statement_id)
);

-- Messages a job could not accept, kept with their raw payload and the reason.
CREATE TABLE dead_letters (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    import_id       bigint      NOT NULL REFERENCES imports (import_id) ON DELETE CASCADE,
    job             text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    payload         bytea       NOT NULL,
    reason          text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    UNIQUE (job, kafka_partition, kafka_offset)
);
CREATE INDEX dead_letters_import_idx ON dead_letters (import_id, id);

-- Files written at expiry with the unconsumed rest of a stream.
CREATE TABLE job_archives (
    job         text        NOT NULL REFERENCES jobs (name) ON DELETE CASCADE,
    partition   integer     NOT NULL,
    from_offset bigint      NOT NULL,
    to_offset   bigint      NOT NULL,
    messages    bigint      NOT NULL,
    path        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (job, partition, from_offset)
);
