-- What only PostgreSQL 16 and 17 have among the cluster-wide objects: membership options
-- (INHERIT, SET) and the predefined roles pg_create_subscription and pg_maintain.
GRANT fid_group TO fid_reader WITH INHERIT FALSE, SET FALSE;
GRANT pg_create_subscription TO fid_owner;
GRANT pg_maintain TO fid_owner;
