-- Statements counted per import, citizen, statement channel and course, plus
-- one row per citizen and channel for all courses (course NULL): demand reads
-- a few rows per citizen instead of every statement. A job folds the counts
-- of the batches it committed into these about once a second, together with
-- where the counts stop per partition, in one transaction; a job that starts
-- counts what was stored past that stop (a crash between a batch and its fold).
CREATE TABLE statement_counts (
    import_id  bigint  NOT NULL,
    citizen_id integer NOT NULL,
    channel    text,
    course     text,
    statements bigint  NOT NULL CHECK (statements > 0),
    CONSTRAINT statement_counts_key
        UNIQUE NULLS NOT DISTINCT (import_id, citizen_id, channel, course)
) WITH (fillfactor = 70); -- room for count updates in place (HOT)

-- The offset per partition below which every stored statement is counted.
CREATE TABLE statement_counts_offsets (
    import_id   bigint  NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL CHECK (next_offset >= 0),
    PRIMARY KEY (import_id, partition)
);

-- Counts the statements of `p_import` stored from where its counts stop up to
-- `p_through` (the next offset per partition in `p_partitions`), and moves the
-- stop there. Used by a starting job, and by fixtures that insert statements.
CREATE FUNCTION count_statements(p_import bigint, p_partitions integer[], p_through bigint[])
RETURNS void LANGUAGE sql AS $$
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

    INSERT INTO statement_counts_offsets AS o (import_id, partition, next_offset)
    SELECT p_import, t.partition, t.through
      FROM unnest(p_partitions, p_through) AS t (partition, through)
    ON CONFLICT (import_id, partition)
    DO UPDATE SET next_offset = GREATEST(o.next_offset, EXCLUDED.next_offset);
$$;

-- Statements stored before this migration are counted now.
SELECT count_statements(s.import_id, array_agg(s.kafka_partition), array_agg(s.next_offset))
  FROM (SELECT import_id, kafka_partition, max(kafka_offset) + 1 AS next_offset
          FROM statements GROUP BY import_id, kafka_partition) s
 GROUP BY s.import_id;
