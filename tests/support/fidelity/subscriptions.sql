-- Subscriptions, in the corpus's second database. Neither is ever connected to a publisher:
-- fid_sub is disabled without a slot; fid_sub_enabled is enabled with a slot name and points
-- at a port nothing listens on inside the container, so its worker only retries.
CREATE SUBSCRIPTION fid_sub CONNECTION 'host=127.0.0.1 port=5432 dbname=fidelity user=fid_owner'
    PUBLICATION fid_pub, fid_pub_schema
    WITH (connect = false, enabled = false, create_slot = false, slot_name = NONE, binary = true, streaming = on);
COMMENT ON SUBSCRIPTION fid_sub IS 'never connected';
CREATE SUBSCRIPTION fid_sub_enabled CONNECTION 'host=127.0.0.1 port=1 dbname=fidelity user=fid_owner connect_timeout=1'
    PUBLICATION fid_pub
    WITH (connect = false, enabled = false, create_slot = false, slot_name = 'fid_slot', synchronous_commit = 'remote_apply');
ALTER SUBSCRIPTION fid_sub_enabled ENABLE;
ALTER SUBSCRIPTION fid_sub_enabled OWNER TO fid_admin;
