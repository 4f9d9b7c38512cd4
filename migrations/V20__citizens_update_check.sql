-- A PATCH updates a citizen's row (and its relatives'), never its import_id,
-- yet V7's statement-level check ran on every one: a PL/pgSQL call whose
-- first run in a session costs ~1.6 ms (0.16 ms after), the largest part of
-- the first PATCH on a connection. Checked only when import_id changes now:
-- the WHEN condition is evaluated without calling the function, so a PATCH
-- pays nothing, and a row moved to a missing import is still refused.
DROP TRIGGER citizens_need_their_import_on_update ON citizens;

CREATE FUNCTION citizen_moved_needs_its_import() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM imports i WHERE i.import_id = NEW.import_id) THEN
        RAISE EXCEPTION 'citizens must belong to an existing import'
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER citizens_need_their_import_when_moved
    AFTER UPDATE OF import_id ON citizens
    FOR EACH ROW WHEN (OLD.import_id IS DISTINCT FROM NEW.import_id)
    EXECUTE FUNCTION citizen_moved_needs_its_import();
