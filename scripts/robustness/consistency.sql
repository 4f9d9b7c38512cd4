-- What must hold in an insikt database after any hostile run, whatever was
-- refused: each line is a check and the number of rows that break it (all 0).
-- Run by scripts/robustness.sh after every pass; the statement counts can lag
-- the statements by a fold (about a second), so the script waits for jobs to
-- be idle before it runs this. An empty import is a valid one (the 2019 API
-- accepts `{"citizens": []}`); imports are written in one transaction, so
-- a partial one would show as a relative without its citizen.
\pset footer off
WITH cz AS (SELECT import_id, citizen_id, relatives FROM citizens),
edges AS (SELECT import_id, citizen_id, unnest(relatives) AS relative FROM cz)
SELECT 'citizens without their import' AS "check",
       (SELECT count(*) FROM citizens c
         WHERE NOT EXISTS (SELECT 1 FROM imports i WHERE i.import_id = c.import_id)) AS broken
UNION ALL
SELECT 'relatives who are not citizens of the import',
       (SELECT count(*) FROM edges e
         WHERE NOT EXISTS (SELECT 1 FROM cz WHERE cz.import_id = e.import_id
                                              AND cz.citizen_id = e.relative))
UNION ALL
SELECT 'relatives not mutual',
       (SELECT count(*) FROM edges e
         WHERE NOT EXISTS (SELECT 1 FROM edges back
                            WHERE back.import_id = e.import_id
                              AND back.citizen_id = e.relative
                              AND back.relative = e.citizen_id))
UNION ALL
SELECT 'a relative listed twice',
       (SELECT count(*) FROM (SELECT 1 FROM edges
                               GROUP BY import_id, citizen_id, relative
                              HAVING count(*) > 1) AS twice)
UNION ALL
SELECT 'statements of a citizen not in the import',
       (SELECT count(*) FROM statements s
         WHERE NOT EXISTS (SELECT 1 FROM citizens c WHERE c.import_id = s.import_id
                                                      AND c.citizen_id = s.citizen_id))
UNION ALL
SELECT 'imports without a job',
       (SELECT count(*) FROM imports i
         WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.import_id = i.import_id))
UNION ALL
SELECT 'statement counts that differ from the statements',
       (SELECT count(*) FROM (
           (SELECT import_id, citizen_id, channel, course, statements FROM statement_counts
            EXCEPT ALL
            SELECT import_id, citizen_id, channel, course, count(*) FROM statements
             GROUP BY GROUPING SETS ((import_id, citizen_id, channel, course),
                                     (import_id, citizen_id, channel)))
           UNION ALL
           (SELECT import_id, citizen_id, channel, course, count(*) FROM statements
             GROUP BY GROUPING SETS ((import_id, citizen_id, channel, course),
                                     (import_id, citizen_id, channel))
            EXCEPT ALL
            SELECT import_id, citizen_id, channel, course, statements FROM statement_counts)
       ) AS differences);
