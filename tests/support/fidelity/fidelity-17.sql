-- What only PostgreSQL 16 and 17 have in a database: the MAINTAIN privilege, a collation of
-- the builtin provider, a login event trigger, identity columns and an access method on a
-- partitioned table.
GRANT MAINTAIN ON app.customers TO fid_writer;
CREATE COLLATION app.builtin_c (provider = builtin, locale = 'C.UTF-8');
CREATE FUNCTION app.note_login() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    NULL;
END
$$;
CREATE EVENT TRIGGER fid_login ON login EXECUTE FUNCTION app.note_login();
CREATE TABLE app.measurements (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 5),
    at date NOT NULL,
    v numeric,
    label text COLLATE app.builtin_c
) PARTITION BY RANGE (at) USING fid_heap;
CREATE TABLE app.measurements_2025 PARTITION OF app.measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.measurements_rest PARTITION OF app.measurements DEFAULT;
INSERT INTO app.measurements (at, v, label) SELECT date '2024-12-01' + g, g / 7.0, 'm' || g FROM generate_series(1, 90) AS g;
