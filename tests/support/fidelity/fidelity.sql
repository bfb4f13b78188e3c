-- The corpus's main database (fidelity): one or more of every kind of object pg_dump handles,
-- each with data where it can hold any. Run as the bootstrap superuser in database fidelity.

-- Extensions, one in a schema of its own, and a privilege changed on an extension's function
-- (pg_dump dumps it as a difference to pg_init_privs).
CREATE SCHEMA ext;
CREATE EXTENSION hstore SCHEMA ext;
CREATE EXTENSION citext;
CREATE EXTENSION pg_trgm;
CREATE EXTENSION postgres_fdw;
COMMENT ON EXTENSION citext IS 'case-insensitive text, commented';
REVOKE EXECUTE ON FUNCTION similarity(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION similarity(text, text) TO fid_reader;

-- Schemas; the public schema's owner, comment and privileges are changed (a system object).
CREATE SCHEMA app AUTHORIZATION fid_owner;
COMMENT ON SCHEMA app IS 'the application';
GRANT USAGE ON SCHEMA app TO fid_reader, fid_writer;
CREATE SCHEMA "Odd ""Schema"" ü";
ALTER SCHEMA public OWNER TO fid_owner;
COMMENT ON SCHEMA public IS 'public, commented';
GRANT CREATE ON SCHEMA public TO fid_writer;

SET search_path = app, public;

-- Default privileges (global and per schema), before the objects they apply to.
ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner IN SCHEMA app GRANT SELECT ON TABLES TO fid_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner IN SCHEMA app GRANT USAGE ON SEQUENCES TO fid_writer;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_owner GRANT USAGE ON TYPES TO fid_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE fid_writer GRANT USAGE ON SCHEMAS TO fid_group;

-- Types: enum (with a value added later), domains, composite, range with a named multirange,
-- and a base type with functions of its own.
CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
ALTER TYPE app.mood ADD VALUE 'ecstatic' AFTER 'happy';
ALTER TYPE app.mood ADD VALUE 'meh' BEFORE 'ok';
CREATE DOMAIN app.positive_int AS integer DEFAULT 1 NOT NULL CONSTRAINT positive CHECK (VALUE > 0);
COMMENT ON CONSTRAINT positive ON DOMAIN app.positive_int IS 'no zero, no negatives';
CREATE DOMAIN app.email AS citext CONSTRAINT has_at CHECK (VALUE ~ '@');
CREATE DOMAIN app.later_checked AS text;
ALTER DOMAIN app.later_checked ADD CONSTRAINT short CHECK (length(VALUE) < 100) NOT VALID;
CREATE TYPE app.address AS (street text, city text COLLATE "C", zip varchar(10));
COMMENT ON COLUMN app.address.zip IS 'postal code';
CREATE TYPE app.floatrange AS RANGE (subtype = float8, subtype_diff = float8mi, multirange_type_name = app.floatranges);
CREATE TYPE app.rawtext;
CREATE FUNCTION app.rawtext_in(cstring) RETURNS app.rawtext LANGUAGE internal IMMUTABLE STRICT AS 'textin';
CREATE FUNCTION app.rawtext_out(app.rawtext) RETURNS cstring LANGUAGE internal IMMUTABLE STRICT AS 'textout';
CREATE TYPE app.rawtext (INPUT = app.rawtext_in, OUTPUT = app.rawtext_out, LIKE = text, CATEGORY = 'S');
COMMENT ON TYPE app.rawtext IS 'a base type';
REVOKE USAGE ON TYPE app.mood FROM PUBLIC;
GRANT USAGE ON TYPE app.mood TO fid_writer;
GRANT USAGE ON DOMAIN app.email TO fid_group;
ALTER TYPE app.address OWNER TO fid_owner;

-- Collations.
CREATE COLLATION app.german_phonebook (provider = icu, locale = 'de-u-co-phonebk');
CREATE COLLATION app.case_insensitive (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION app.c_copy FROM "C";
COMMENT ON COLLATION app.case_insensitive IS 'compares without case';

-- Text search: parser, template, dictionary, configuration.
CREATE TEXT SEARCH PARSER app.fid_parser (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end,
    LEXTYPES = prsd_lextype, HEADLINE = prsd_headline);
CREATE TEXT SEARCH TEMPLATE app.fid_template (INIT = dsimple_init, LEXIZE = dsimple_lexize);
CREATE TEXT SEARCH DICTIONARY app.fid_simple (TEMPLATE = app.fid_template, STOPWORDS = english);
CREATE TEXT SEARCH CONFIGURATION app.fid_english (COPY = pg_catalog.english);
ALTER TEXT SEARCH CONFIGURATION app.fid_english ALTER MAPPING FOR word, asciiword WITH app.fid_simple, english_stem;
CREATE TEXT SEARCH CONFIGURATION app.fid_custom (PARSER = app.fid_parser);
ALTER TEXT SEARCH CONFIGURATION app.fid_custom ADD MAPPING FOR asciiword WITH simple;
COMMENT ON TEXT SEARCH CONFIGURATION app.fid_english IS 'english with a simple dictionary first';

-- Functions, procedures, aggregates, operators, operator classes and families, casts,
-- conversions, a procedural language and a table access method.
CREATE FUNCTION app.add_tax(numeric) RETURNS numeric LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURN $1 * 1.2;
CREATE FUNCTION app.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;
CREATE FUNCTION app.count_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM inserted;
    RETURN NULL;
END
$$;
CREATE FUNCTION app.check_positive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.amount < 0 THEN
        RAISE EXCEPTION 'negative amount';
    END IF;
    RETURN NEW;
END
$$;
CREATE FUNCTION app.secret() RETURNS int LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = app, pg_temp SET work_mem = '1MB' COST 5 AS 'SELECT 42';
REVOKE EXECUTE ON FUNCTION app.secret() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.secret() TO fid_reader;
ALTER FUNCTION app.secret() OWNER TO fid_owner;
COMMENT ON FUNCTION app.secret() IS 'the answer';
CREATE PROCEDURE app.reset_counter(INOUT n int) LANGUAGE plpgsql AS $$ BEGIN n := 0; END $$;
CREATE FUNCTION app.address_text(app.address) RETURNS text LANGUAGE sql IMMUTABLE
    RETURN ($1).street || ', ' || ($1).city;
CREATE CAST (app.address AS text) WITH FUNCTION app.address_text(app.address) AS ASSIGNMENT;
COMMENT ON CAST (app.address AS text) IS 'an address as one line';
CREATE AGGREGATE app.product(numeric) (SFUNC = numeric_mul, STYPE = numeric, INITCOND = '1', PARALLEL = SAFE);
CREATE OPERATOR app.~~~ (LEFTARG = text, RIGHTARG = text, FUNCTION = pg_catalog.texticlike);
COMMENT ON OPERATOR app.~~~ (text, text) IS 'ILIKE in disguise';
CREATE FUNCTION app.reverse_cmp(text, text) RETURNS int LANGUAGE sql IMMUTABLE STRICT AS 'SELECT bttextcmp($2, $1)';
CREATE OPERATOR FAMILY app.text_reverse_family USING btree;
CREATE OPERATOR CLASS app.text_reverse_ops FOR TYPE text USING btree FAMILY app.text_reverse_family AS
    OPERATOR 1 > , OPERATOR 2 >= , OPERATOR 3 = , OPERATOR 4 <= , OPERATOR 5 < ,
    FUNCTION 1 app.reverse_cmp(text, text);
CREATE CONVERSION app.fid_latin1_to_utf8 FOR 'LATIN1' TO 'UTF8' FROM iso8859_1_to_utf8;
-- The language's handlers are functions of its own (pg_dump writes a language whose handler is
-- pg_catalog's as CREATE LANGUAGE NAME, which PostgreSQL 13 and later read as CREATE EXTENSION).
CREATE FUNCTION app.fid_call_handler() RETURNS language_handler LANGUAGE c AS '$libdir/plpgsql', 'plpgsql_call_handler';
CREATE FUNCTION app.fid_inline_handler(internal) RETURNS void LANGUAGE c STRICT
    AS '$libdir/plpgsql', 'plpgsql_inline_handler';
CREATE FUNCTION app.fid_validator(oid) RETURNS void LANGUAGE c STRICT AS '$libdir/plpgsql', 'plpgsql_validator';
CREATE LANGUAGE fid_plpgsql HANDLER app.fid_call_handler INLINE app.fid_inline_handler VALIDATOR app.fid_validator;
COMMENT ON LANGUAGE fid_plpgsql IS 'plpgsql under another name';
CREATE FUNCTION app.in_other_language() RETURNS int LANGUAGE fid_plpgsql AS $$ BEGIN RETURN 7; END $$;
CREATE ACCESS METHOD fid_heap TYPE TABLE HANDLER heap_tableam_handler;
COMMENT ON ACCESS METHOD fid_heap IS 'heap by another name';

-- The accounts orders and ledger entries belong to.
CREATE TABLE app.accounts (id bigint PRIMARY KEY, label text NOT NULL);
INSERT INTO app.accounts SELECT 1000 + 7 * g, 'account ' || g FROM generate_series(0, 299) AS g;

-- The richest table (no other table refers to it, so `restore table` may replace it): identity
-- and generated columns, domains, enum, composite, ranges,
-- collations, arrays, hstore, jsonb, the base type; column options, privileges, row-level
-- security and policies, triggers of several kinds, comments.
CREATE TABLE app.customers (
    id bigint GENERATED ALWAYS AS IDENTITY (START WITH 1000 INCREMENT BY 7) PRIMARY KEY,
    email app.email UNIQUE,
    name text COLLATE app.german_phonebook NOT NULL,
    nick text COLLATE app.case_insensitive,
    mood app.mood DEFAULT 'ok',
    address app.address,
    credit app.positive_int,
    span app.floatrange,
    during tstzrange,
    spans int4multirange,
    tags text[],
    attrs ext.hstore,
    doc jsonb,
    raw app.rawtext,
    note app.later_checked,
    name_upper text GENERATED ALWAYS AS (upper(name)) STORED,
    updated_at timestamptz,
    CONSTRAINT customers_name_check CHECK (name <> ''),
    CONSTRAINT no_overlap EXCLUDE USING gist (during WITH &&)
) WITH (fillfactor = 80, autovacuum_enabled = false, toast.autovacuum_enabled = false);
ALTER TABLE app.customers OWNER TO fid_owner;
ALTER TABLE app.customers ALTER COLUMN name SET STATISTICS 200;
ALTER TABLE app.customers ALTER COLUMN doc SET STORAGE EXTERNAL;
ALTER TABLE app.customers ALTER COLUMN doc SET COMPRESSION pglz;
ALTER TABLE app.customers ALTER COLUMN nick SET (n_distinct = 100);
COMMENT ON TABLE app.customers IS 'customers of every type';
COMMENT ON COLUMN app.customers.name_upper IS 'generated';
COMMENT ON CONSTRAINT customers_name_check ON app.customers IS 'a name is never empty';
GRANT SELECT (id, name, mood), UPDATE (nick) ON app.customers TO fid_reader;
GRANT SELECT, INSERT ON app.customers TO fid_writer WITH GRANT OPTION;
GRANT UPDATE ON app.customers TO "fid role ""quoted"" ü";
SET ROLE fid_writer;
GRANT SELECT ON app.customers TO fid_group;
RESET ROLE;
ALTER TABLE app.customers ENABLE ROW LEVEL SECURITY;
ALTER TABLE app.customers FORCE ROW LEVEL SECURITY;
CREATE POLICY cheerful ON app.customers FOR SELECT TO fid_reader USING (mood <> 'sad');
CREATE POLICY solvent ON app.customers AS RESTRICTIVE FOR UPDATE TO fid_writer, fid_group
    USING (true) WITH CHECK (credit > 0);
COMMENT ON POLICY cheerful ON app.customers IS 'readers see the happy ones';
CREATE TRIGGER customers_touch BEFORE INSERT OR UPDATE ON app.customers
    FOR EACH ROW EXECUTE FUNCTION app.touch();
COMMENT ON TRIGGER customers_touch ON app.customers IS 'stamps updated_at';
CREATE TRIGGER customers_count AFTER INSERT ON app.customers REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION app.count_inserted();
ALTER TABLE app.customers DISABLE TRIGGER customers_count;
CREATE INDEX customers_name_trgm ON app.customers USING gin (name gin_trgm_ops);
CREATE INDEX customers_lower_email ON app.customers (lower(email::text)) INCLUDE (name) WHERE mood <> 'sad';
ALTER INDEX app.customers_lower_email ALTER COLUMN 1 SET STATISTICS 300;
CREATE INDEX customers_reverse ON app.customers (nick COLLATE "C" app.text_reverse_ops DESC NULLS LAST);
CREATE UNIQUE INDEX customers_raw ON app.customers ((raw::text)) NULLS NOT DISTINCT;
ALTER TABLE app.customers CLUSTER ON customers_pkey;
ALTER TABLE app.customers REPLICA IDENTITY USING INDEX customers_pkey;
CREATE STATISTICS app.customers_stats (dependencies, ndistinct, mcv) ON mood, credit FROM app.customers;
ALTER STATISTICS app.customers_stats SET STATISTICS 500;
CREATE STATISTICS app.customers_expr_stats ON (lower(name)) FROM app.customers;
COMMENT ON STATISTICS app.customers_stats IS 'mood and credit go together';

INSERT INTO app.customers (email, name, nick, mood, address, credit, span, during, spans, tags, attrs, doc, raw, note)
SELECT 'user' || g || '@example.test', 'Müller ' || g, CASE WHEN g % 4 = 0 THEN 'NICK' || g ELSE 'nick' || g END,
       (ARRAY['sad', 'ok', 'happy', 'ecstatic', 'meh'])[g % 5 + 1]::app.mood,
       ROW('Straße ' || g, 'Köln', lpad(g::text, 5, '0'))::app.address, g % 50 + 1,
       app.floatrange(g / 3.0, g / 2.0 + 1), tstzrange(timestamptz '2025-01-01 00:00+00' + g * interval '1 day',
       timestamptz '2025-01-01 00:00+00' + (g + 1) * interval '1 day'), int4multirange(int4range(g, g + 3), int4range(g + 10, g + 12)),
       ARRAY['tab' || chr(9) || g, 'quote"' || g, NULL], ext.hstore(ARRAY['k', 'n'], ARRAY['v' || g, g::text]),
       jsonb_build_object('n', g, 'nested', jsonb_build_object('list', jsonb_build_array(g, 'x', NULL))),
       ('raw ' || g)::app.rawtext, 'line one' || chr(10) || 'line two ' || g
FROM generate_series(1, 300) AS g;
UPDATE app.customers SET updated_at = timestamptz '2025-06-01 12:00+00' + id * interval '1 minute';

-- Partitioning: range over list (two levels) with a default partition, a partition with a
-- column order of its own (attached with a dropped column), partitioned indexes, a primary key,
-- a foreign key from and one to a partitioned table; hash and list partitioning.
CREATE TABLE app.orders (
    id bigint NOT NULL,
    ordered_at date NOT NULL,
    status text NOT NULL,
    customer_id bigint REFERENCES app.accounts (id) ON DELETE CASCADE,
    amount numeric(10, 2) CHECK (amount >= 0),
    PRIMARY KEY (id, ordered_at, status)
) PARTITION BY RANGE (ordered_at);
ALTER TABLE app.orders OWNER TO fid_owner;
CREATE TABLE app.orders_2024 PARTITION OF app.orders FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')
    PARTITION BY LIST (status);
CREATE TABLE app.orders_2024_open PARTITION OF app.orders_2024 FOR VALUES IN ('open', 'pending');
CREATE TABLE app.orders_2024_rest PARTITION OF app.orders_2024 DEFAULT;
CREATE TABLE app.orders_2025 (extra int, amount numeric(10, 2), status text NOT NULL, customer_id bigint,
    ordered_at date NOT NULL, id bigint NOT NULL, CONSTRAINT orders_amount_check CHECK (amount >= 0));
ALTER TABLE app.orders_2025 DROP COLUMN extra;
ALTER TABLE app.orders ATTACH PARTITION app.orders_2025 FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE app.orders_later PARTITION OF app.orders DEFAULT;
CREATE INDEX orders_customer ON app.orders (customer_id);
CREATE INDEX orders_amount_brin ON app.orders USING brin (ordered_at) WITH (pages_per_range = 16);
CREATE TRIGGER orders_positive BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.check_positive();
COMMENT ON TABLE app.orders_2024_rest IS 'the default partition of 2024';
INSERT INTO app.orders
SELECT g, date '2024-03-01' + (g * 3) % 700, (ARRAY['open', 'pending', 'paid', 'shipped'])[g % 4 + 1],
       1000 + 7 * (g % 300), (g * 1.37)::numeric(10, 2)
FROM generate_series(1, 1200) AS g;
CREATE TABLE app.order_notes (
    id serial PRIMARY KEY,
    order_id bigint NOT NULL,
    ordered_at date NOT NULL,
    status text NOT NULL,
    note text,
    FOREIGN KEY (order_id, ordered_at, status) REFERENCES app.orders DEFERRABLE INITIALLY DEFERRED
);
INSERT INTO app.order_notes (order_id, ordered_at, status, note)
SELECT id, ordered_at, status, 'note for ' || id FROM app.orders WHERE id % 10 = 0;

CREATE TABLE app.events (id bigint PRIMARY KEY, kind text, payload jsonb) PARTITION BY HASH (id);
CREATE TABLE app.events_0 PARTITION OF app.events FOR VALUES WITH (MODULUS 3, REMAINDER 0);
CREATE TABLE app.events_1 PARTITION OF app.events FOR VALUES WITH (MODULUS 3, REMAINDER 1);
CREATE TABLE app.events_2 PARTITION OF app.events FOR VALUES WITH (MODULUS 3, REMAINDER 2)
    WITH (fillfactor = 70);
INSERT INTO app.events SELECT g, 'kind' || g % 7, jsonb_build_object('g', g) FROM generate_series(1, 500) AS g;

CREATE TABLE app.regions (code text, region text NOT NULL, population int) PARTITION BY LIST (region);
CREATE TABLE app.regions_eu PARTITION OF app.regions FOR VALUES IN ('eu', 'uk');
CREATE TABLE app.regions_other PARTITION OF app.regions DEFAULT;
INSERT INTO app.regions SELECT 'r' || g, (ARRAY['eu', 'uk', 'us', 'apac'])[g % 4 + 1], g * 1000
FROM generate_series(1, 40) AS g;

-- Inheritance, single and multiple, with a NO INHERIT constraint.
CREATE TABLE app.vehicles (id int PRIMARY KEY, wheels int CONSTRAINT wheels_ok CHECK (wheels >= 0) NO INHERIT);
CREATE TABLE app.boats (hull text);
CREATE TABLE app.cars (doors int DEFAULT 4) INHERITS (app.vehicles);
CREATE TABLE app.amphibians (propellers int) INHERITS (app.vehicles, app.boats);
INSERT INTO app.vehicles SELECT g, g % 5 FROM generate_series(1, 20) AS g;
INSERT INTO app.cars SELECT g, 4, 2 + g % 3 FROM generate_series(21, 60) AS g;
INSERT INTO app.amphibians SELECT g, 4, 'steel', 2 FROM generate_series(61, 65) AS g;

-- A typed table, an unlogged table with an unlogged sequence, a table and an index in the
-- corpus tablespace, a table of the access method fid_heap.
CREATE TABLE app.addresses OF app.address (PRIMARY KEY (street), city WITH OPTIONS DEFAULT 'Bonn');
INSERT INTO app.addresses SELECT 'Weg ' || g, 'Bonn', g::text FROM generate_series(1, 10) AS g;
CREATE UNLOGGED SEQUENCE app.cache_seq;
CREATE UNLOGGED TABLE app.cache (id int PRIMARY KEY DEFAULT nextval('app.cache_seq'), v bytea);
INSERT INTO app.cache (v) SELECT decode(md5(g::text), 'hex') FROM generate_series(1, 25) AS g;
CREATE TABLE app.archive (id int PRIMARY KEY USING INDEX TABLESPACE fid_space, body text) TABLESPACE fid_space;
INSERT INTO app.archive SELECT g, repeat('archived ', g) FROM generate_series(1, 30) AS g;
CREATE TABLE app.heaped (id int, v text) USING fid_heap;
INSERT INTO app.heaped SELECT g, 'heap ' || g FROM generate_series(1, 15) AS g;

-- Sequences with their current values: standalone (cycling), owned by a column, called
-- and never called, one with setval(..., false).
CREATE SEQUENCE app.invoice_no AS integer START 100 INCREMENT 5 MINVALUE 100 MAXVALUE 100000 CYCLE CACHE 10;
SELECT nextval('app.invoice_no') FROM generate_series(1, 17);
CREATE SEQUENCE app.never_called START 50;
CREATE SEQUENCE app.rewound;
SELECT setval('app.rewound', 77, false);
CREATE TABLE app.tickets (no int DEFAULT nextval('app.invoice_no'), title text);
ALTER SEQUENCE app.invoice_no OWNED BY app.tickets.no;
INSERT INTO app.tickets (title) SELECT 'ticket ' || g FROM generate_series(1, 12) AS g;
GRANT USAGE, SELECT ON SEQUENCE app.invoice_no TO fid_writer;
COMMENT ON SEQUENCE app.never_called IS 'never called';

-- Constraints checked later: NOT VALID check and foreign key, deferrable unique.
CREATE TABLE app.ledger (
    id int PRIMARY KEY,
    customer_id bigint,
    amount numeric,
    CONSTRAINT ledger_unique_amount UNIQUE (customer_id, amount) DEFERRABLE INITIALLY IMMEDIATE
);
INSERT INTO app.ledger SELECT g, 1000 + 7 * (g % 300), -g FROM generate_series(1, 50) AS g;
INSERT INTO app.ledger VALUES (51, 99999999, 1);
ALTER TABLE app.ledger ADD CONSTRAINT ledger_positive CHECK (amount > 0) NOT VALID;
ALTER TABLE app.ledger ADD CONSTRAINT ledger_customer FOREIGN KEY (customer_id) REFERENCES app.accounts NOT VALID;
ALTER TABLE app.ledger REPLICA IDENTITY FULL;
CREATE RULE ledger_no_delete AS ON DELETE TO app.ledger WHERE OLD.amount > 1000 DO INSTEAD NOTHING;
COMMENT ON RULE ledger_no_delete ON app.ledger IS 'large entries stay';

-- Views: WITH CHECK OPTION (local and cascaded), security barrier and invoker, a recursive
-- view, an updatable view with an INSTEAD rule and a column default; materialized views, one
-- never populated.
CREATE VIEW app.cheerful_customers WITH (security_barrier = true) AS
    SELECT id, name, mood FROM app.customers WHERE mood IN ('happy', 'ecstatic') WITH LOCAL CHECK OPTION;
CREATE VIEW app.very_cheerful AS SELECT * FROM app.cheerful_customers WHERE id > 1100 WITH CASCADED CHECK OPTION;
CREATE VIEW app.invoker_view WITH (security_invoker = true) AS SELECT id, email FROM app.customers;
CREATE RECURSIVE VIEW app.countdown (n) AS SELECT 10 UNION ALL SELECT n - 1 FROM countdown WHERE n > 0;
CREATE VIEW app.ticket_entry AS SELECT no, title FROM app.tickets;
ALTER VIEW app.ticket_entry ALTER COLUMN title SET DEFAULT 'untitled';
CREATE RULE ticket_entry_insert AS ON INSERT TO app.ticket_entry DO INSTEAD
    INSERT INTO app.tickets (title) VALUES (NEW.title);
COMMENT ON VIEW app.countdown IS 'ten to zero';
COMMENT ON COLUMN app.cheerful_customers.mood IS 'always cheerful';
GRANT SELECT ON app.cheerful_customers TO fid_reader;
ALTER VIEW app.cheerful_customers OWNER TO fid_owner;
CREATE MATERIALIZED VIEW app.order_totals AS
    SELECT customer_id, count(*) AS orders, sum(amount) AS total FROM app.orders GROUP BY customer_id;
CREATE UNIQUE INDEX order_totals_customer ON app.order_totals (customer_id);
CREATE MATERIALIZED VIEW app.never_filled AS SELECT id, name FROM app.customers WITH NO DATA;
COMMENT ON MATERIALIZED VIEW app.order_totals IS 'totals per customer';
GRANT SELECT ON app.order_totals TO fid_reader;

-- Foreign data: wrappers, servers, user mappings (public and per role) and foreign tables.
CREATE FOREIGN DATA WRAPPER fid_dummy OPTIONS (debug 'true');
COMMENT ON FOREIGN DATA WRAPPER fid_dummy IS 'no handler at all';
CREATE SERVER fid_loop FOREIGN DATA WRAPPER postgres_fdw
    OPTIONS (host '127.0.0.1', port '5432', dbname 'fidelity', fetch_size '500');
CREATE SERVER fid_nowhere TYPE 'dummy' VERSION '1.0' FOREIGN DATA WRAPPER fid_dummy;
CREATE USER MAPPING FOR fid_owner SERVER fid_loop OPTIONS (user 'fid_owner', password 'owner-password');
CREATE USER MAPPING FOR PUBLIC SERVER fid_nowhere;
GRANT USAGE ON FOREIGN SERVER fid_loop TO fid_writer;
GRANT USAGE ON FOREIGN DATA WRAPPER postgres_fdw TO fid_owner;
ALTER SERVER fid_loop OWNER TO fid_owner;
COMMENT ON SERVER fid_loop IS 'this database, over TCP';
CREATE FOREIGN TABLE app.remote_customers (id bigint OPTIONS (column_name 'id'), name text)
    SERVER fid_loop OPTIONS (schema_name 'app', table_name 'customers');
COMMENT ON FOREIGN TABLE app.remote_customers IS 'customers seen through postgres_fdw';
GRANT SELECT ON app.remote_customers TO fid_reader;

-- Publications (the subscriptions are in the corpus's second database).
CREATE PUBLICATION fid_pub_all FOR ALL TABLES WITH (publish = 'insert, update');
CREATE PUBLICATION fid_pub FOR TABLE app.customers (id, name, mood) WHERE (id > 1000), app.ledger
    WITH (publish_via_partition_root = true);
ALTER PUBLICATION fid_pub ADD TABLE app.orders;
CREATE PUBLICATION fid_pub_schema FOR TABLES IN SCHEMA app;
ALTER PUBLICATION fid_pub_schema OWNER TO fid_admin;
COMMENT ON PUBLICATION fid_pub IS 'selected columns and rows';

-- Event triggers: one enabled (it only says what it saw) and one disabled.
CREATE FUNCTION app.note_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE DEBUG 'ddl: %', tg_tag;
END
$$;
CREATE EVENT TRIGGER fid_note_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE', 'ALTER TABLE')
    EXECUTE FUNCTION app.note_ddl();
CREATE EVENT TRIGGER fid_sleeping ON sql_drop EXECUTE FUNCTION app.note_ddl();
ALTER EVENT TRIGGER fid_sleeping DISABLE;
ALTER EVENT TRIGGER fid_note_ddl OWNER TO fid_admin;
COMMENT ON EVENT TRIGGER fid_note_ddl IS 'notes DDL';

-- Large objects with owners, privileges and comments.
SELECT lo_from_bytea(424242, convert_to('a small large object', 'UTF8'));
SELECT lo_from_bytea(424243, decode(string_agg(md5(g::text), ''), 'hex')) FROM generate_series(1, 20000) AS g;
SELECT lo_create(424244);
ALTER LARGE OBJECT 424242 OWNER TO fid_owner;
GRANT SELECT ON LARGE OBJECT 424242 TO fid_reader;
GRANT SELECT, UPDATE ON LARGE OBJECT 424243 TO fid_writer;
COMMENT ON LARGE OBJECT 424243 IS 'about 320 kB';

-- Odd names: quotes, a newline, a tab, spaces, non-ASCII, reserved words, as schema, table,
-- column, index, constraint and sequence names.
CREATE TABLE "Odd ""Schema"" ü"."select" ("from" int PRIMARY KEY, "where" text, "Mixed Case" text);
INSERT INTO "Odd ""Schema"" ü"."select" SELECT g, 'w' || g, 'M' || g FROM generate_series(1, 9) AS g;
CREATE TABLE "Odd ""Schema"" ü"."line
break" ("col
with newline" int, "tab	col" text);
INSERT INTO "Odd ""Schema"" ü"."line
break" SELECT g, 't' || g FROM generate_series(1, 4) AS g;
CREATE TABLE "Odd ""Schema"" ü"."line break" (id serial, "ünïcödé" text CONSTRAINT "ünïcödé check" CHECK ("ünïcödé" <> ''));
INSERT INTO "Odd ""Schema"" ü"."line break" ("ünïcödé") VALUES ('ä'), ('ö'), ('ü'), ('日本');
CREATE TABLE public."Quote""d; DROP TABLE x; --" (id int, "user" text);
INSERT INTO public."Quote""d; DROP TABLE x; --" VALUES (1, 'not injected');
CREATE INDEX "index with spaces" ON "Odd ""Schema"" ü"."select" ("where");
CREATE VIEW "Odd ""Schema"" ü"."order" AS SELECT "from" AS "group" FROM "Odd ""Schema"" ü"."select";
COMMENT ON TABLE "Odd ""Schema"" ü"."line
break" IS E'a table whose name\nhas a line break';

ANALYZE;
