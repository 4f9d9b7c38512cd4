-- Places of towns (SPEC section 5, "Places"; src/places/).
--
-- A town is placed by a rule over the live airports whose city is its name
-- (case-insensitive), computed at every read so that a soft-deleted or
-- edited airport moves its town at once. Where the rule cannot decide (a
-- tie between countries) or decides wrongly, an analyst fixes the place:
-- one row here per town name, either a country (the town is then placed
-- among that country's airports of its name) or coordinates. Deleting the
-- row gives the town back to the rule.
--
-- Names match case-insensitively, as the rule matches airports: a fix for
-- "valencia" is the fix for "Valencia".
CREATE TABLE town_places (
    town       text        NOT NULL
               CHECK (town <> '' AND char_length(town) <= 256),
    country    text        CHECK (country <> '' AND char_length(country) <= 256),
    latitude   double precision CHECK (latitude BETWEEN -90 AND 90),
    longitude  double precision CHECK (longitude BETWEEN -180 AND 180),
    location   geography(Point, 4326)
               GENERATED ALWAYS AS (
                   CASE WHEN latitude IS NOT NULL
                        THEN ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)::geography
                   END) STORED,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    -- Either a country, or both coordinates; never a mix.
    CHECK ((country IS NOT NULL AND latitude IS NULL AND longitude IS NULL)
        OR (country IS NULL AND latitude IS NOT NULL AND longitude IS NOT NULL))
);

CREATE UNIQUE INDEX town_places_town_idx ON town_places (lower(town));
