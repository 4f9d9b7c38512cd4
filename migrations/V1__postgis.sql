-- PostGIS gives airports their geography points and radius search.
CREATE EXTENSION IF NOT EXISTS postgis;
