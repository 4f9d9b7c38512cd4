-- The course catalogue (SPEC section 5): the courses the company offers.
-- Any other course a statement asks for is a new course. A course kept
-- with offered = false (planned, withdrawn) is not offered, so it is new.
CREATE TABLE courses (
    course     text        PRIMARY KEY
               CHECK (course <> '' AND length(course) <= 256 AND btrim(course) <> ''),
    title      text        CHECK (title IS NULL OR length(title) <= 1000),
    offered    boolean     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
