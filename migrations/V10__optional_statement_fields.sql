-- SPEC section 3: `score` and `text` are optional in a statement. `ts` is
-- optional too, but stays NOT NULL here: without one, the job stores the
-- Kafka record's timestamp.
ALTER TABLE statements ALTER COLUMN score DROP NOT NULL,
                       ALTER COLUMN text DROP NOT NULL;
