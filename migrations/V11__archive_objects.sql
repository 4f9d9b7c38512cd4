-- Archives in an object store (file:// or s3://): one row per uploaded
-- object, inserted only once its upload completed, so a row always names a
-- whole object. `path` held a local file name; it becomes the object's URL.
ALTER TABLE job_archives RENAME COLUMN path TO url;
ALTER TABLE job_archives
    ADD COLUMN bytes  bigint,
    ADD COLUMN sha256 text;
