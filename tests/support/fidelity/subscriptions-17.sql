-- Subscription options PostgreSQL 16 and 17 added.
CREATE SUBSCRIPTION fid_sub_17 CONNECTION 'host=127.0.0.1 port=5432 dbname=fidelity user=fid_owner'
    PUBLICATION fid_pub
    WITH (connect = false, enabled = false, create_slot = false, slot_name = 'fid_slot_17', origin = none,
          run_as_owner = true, password_required = false, failover = true, disable_on_error = true);
