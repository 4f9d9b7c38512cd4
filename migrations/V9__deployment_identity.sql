-- Every database is one deployment, with an identity made here, once. Job
-- names, topics and the consumer group derive from it and the import id, so
-- deployments sharing a Kafka cluster (staging beside production, a database
-- re-created after a restore) never read each other's streams, although
-- every database numbers its imports from 1.
CREATE TABLE deployment (
    singleton  boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    created_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO deployment DEFAULT VALUES;

-- Jobs made before this migration were named from the import id alone and
-- their statements are in those topics: they keep them (and their names),
-- and each instance subscribes to them by name. Only new jobs get the new names.
ALTER TABLE jobs ADD COLUMN legacy_topic boolean NOT NULL DEFAULT false;
UPDATE jobs SET legacy_topic = true;
