-- The corpus's cluster-wide objects: roles with every attribute, memberships, role settings,
-- parameter privileges, a tablespace, and the corpus databases with their own properties.
-- Run as the bootstrap superuser in the postgres database; the tablespace's directory
-- (fidelity.TABLESPACE_DIRECTORY) must exist and belong to the postgres OS user.

SET password_encryption = 'scram-sha-256';
CREATE ROLE fid_owner LOGIN CREATEDB PASSWORD 'owner-password';
CREATE ROLE fid_admin SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS LOGIN
    CONNECTION LIMIT 5 VALID UNTIL '2099-12-31 23:59:59+00' PASSWORD 'admin-password';
CREATE ROLE fid_reader NOLOGIN NOINHERIT;
CREATE ROLE fid_writer LOGIN INHERIT CONNECTION LIMIT 10;
CREATE ROLE fid_group NOLOGIN;
CREATE ROLE "fid role ""quoted"" ü" LOGIN;
SET password_encryption = 'md5';
CREATE ROLE fid_legacy LOGIN PASSWORD 'legacy-password';
RESET password_encryption;

GRANT fid_group TO fid_writer WITH ADMIN OPTION;
GRANT fid_reader TO fid_writer;
GRANT fid_group TO "fid role ""quoted"" ü" GRANTED BY fid_writer;
GRANT pg_read_all_data TO fid_reader;
GRANT pg_signal_backend TO fid_group;

ALTER ROLE fid_writer SET statement_timeout = '30s';
ALTER ROLE fid_reader SET search_path = app, public;
ALTER ROLE "fid role ""quoted"" ü" SET application_name = 'quoted role';
COMMENT ON ROLE fid_owner IS 'owns the corpus';
COMMENT ON ROLE "fid role ""quoted"" ü" IS E'a role with\na two-line comment';

GRANT SET ON PARAMETER log_statement TO fid_owner;
GRANT ALTER SYSTEM ON PARAMETER work_mem TO fid_admin;

CREATE TABLESPACE fid_space OWNER fid_owner LOCATION '/var/lib/postgresql/fid_space';
ALTER TABLESPACE fid_space SET (random_page_cost = 1.1);
COMMENT ON TABLESPACE fid_space IS 'the corpus tablespace';
GRANT CREATE ON TABLESPACE fid_space TO fid_writer;

CREATE DATABASE fidelity OWNER fid_owner TEMPLATE template0 ENCODING 'UTF8'
    LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LC_COLLATE 'C.UTF-8' LC_CTYPE 'C.UTF-8' CONNECTION LIMIT 50;
COMMENT ON DATABASE fidelity IS E'the fidelity corpus:\nevery kind of object';
ALTER DATABASE fidelity SET work_mem = '16MB';
ALTER DATABASE fidelity SET search_path = app, public;
ALTER ROLE fid_writer IN DATABASE fidelity SET work_mem = '32MB';
REVOKE CONNECT, TEMPORARY ON DATABASE fidelity FROM PUBLIC;
GRANT CONNECT ON DATABASE fidelity TO fid_reader, fid_writer;
GRANT TEMPORARY ON DATABASE fidelity TO fid_writer WITH GRANT OPTION;

-- Its owner's name is ASCII: role names live in a catalog shared by databases of every
-- encoding, and a name that is not ASCII reads differently in a LATIN1 database than in the
-- UTF8 postgres database (pg_dumpall's ALTER DATABASE ... OWNER fails on it).
CREATE DATABASE "fidelity latin1 ""db""" OWNER fid_legacy TEMPLATE template0
    ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C';
COMMENT ON DATABASE "fidelity latin1 ""db""" IS 'a LATIN1 database with a name that needs quotes';
ALTER DATABASE "fidelity latin1 ""db""" SET DateStyle = 'SQL, DMY';
ALTER ROLE fid_reader IN DATABASE "fidelity latin1 ""db""" SET statement_timeout = '5s';
GRANT CREATE ON DATABASE "fidelity latin1 ""db""" TO fid_group;
