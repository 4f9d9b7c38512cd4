-- The insights' compact form of the stored statements (src/insights/segment.rs):
-- per import, segments of (citizen, course, time, score) a few bytes a
-- statement, which every instance loads instead of scanning `statements`.
--
-- A job's fold writes one segment with the statement counts it folds, in
-- the same transaction (so the counts' stop per partition also says which
-- statements the segments hold), a replay one with each batch it stores.
-- Segments are numbered per import in commit order: the state row is locked
-- to take a number, so a reader that sees number n has seen all below it.
-- Four segments of one level are merged into one of the next (level 0 is a
-- fold's): an import keeps a few segments, and each statement is rewritten
-- once per level.
CREATE TABLE insight_state (
    import_id bigint  PRIMARY KEY REFERENCES imports (import_id) ON DELETE CASCADE,
    next_seq  bigint  NOT NULL DEFAULT 1 CHECK (next_seq >= 1),
    -- The segments must be made again from `statements` (see below); no
    -- segment is written meanwhile, the rebuild covers what is counted.
    rebuild   boolean NOT NULL DEFAULT false
);

CREATE TABLE insight_segments (
    import_id  bigint   NOT NULL REFERENCES insight_state (import_id) ON DELETE CASCADE,
    -- The segment numbers it holds: one for a fold's, a range once merged.
    first_seq  bigint   NOT NULL,
    last_seq   bigint   NOT NULL,
    level      smallint NOT NULL CHECK (level >= 0),
    statements integer  NOT NULL CHECK (statements >= 0),
    data       bytea    NOT NULL,
    PRIMARY KEY (import_id, first_seq),
    CHECK (first_seq <= last_seq)
);
-- Already compact: PostgreSQL's compression would only cost time on reads.
ALTER TABLE insight_segments ALTER COLUMN data SET STORAGE EXTERNAL;

-- Statements counted by SQL (fixtures, this migration's imports) have no
-- segment: the counting asks for a rebuild from `statements`, which the
-- service performs at the import's next insights request. The jobs count
-- in Rust and write segments as they go (src/statements/counts.rs).
CREATE OR REPLACE FUNCTION count_statements(p_import bigint, p_partitions integer[], p_through bigint[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    counted bigint;
BEGIN
    INSERT INTO statement_counts AS c (import_id, citizen_id, channel, course, statements)
    SELECT p_import, s.citizen_id, s.channel, s.course, count(*)
      FROM statements s
      JOIN unnest(p_partitions, p_through) AS t (partition, through)
        ON t.partition = s.kafka_partition
      LEFT JOIN statement_counts_offsets o
        ON o.import_id = p_import AND o.partition = s.kafka_partition
     WHERE s.import_id = p_import
       AND s.kafka_offset >= COALESCE(o.next_offset, 0)
       AND s.kafka_offset < t.through
     GROUP BY GROUPING SETS ((s.citizen_id, s.channel, s.course), (s.citizen_id, s.channel))
    ON CONFLICT ON CONSTRAINT statement_counts_key
    DO UPDATE SET statements = c.statements + EXCLUDED.statements;
    GET DIAGNOSTICS counted = ROW_COUNT;

    INSERT INTO statement_counts_offsets AS o (import_id, partition, next_offset)
    SELECT p_import, t.partition, t.through
      FROM unnest(p_partitions, p_through) AS t (partition, through)
    ON CONFLICT (import_id, partition)
    DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset);

    IF counted > 0 THEN
        INSERT INTO insight_state AS st (import_id, rebuild) VALUES (p_import, true)
        ON CONFLICT (import_id) DO UPDATE SET rebuild = true;
    END IF;
END $$;

-- Imports that already have counted statements are rebuilt on first use.
INSERT INTO insight_state (import_id, rebuild)
SELECT DISTINCT o.import_id, true
  FROM statement_counts_offsets o
  JOIN imports i ON i.import_id = o.import_id
UNION
SELECT DISTINCT s.import_id, true
  FROM statements s
  JOIN imports i ON i.import_id = s.import_id
 WHERE s.kafka_partition < 0;
