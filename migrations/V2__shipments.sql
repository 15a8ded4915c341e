-- Shipments (kind 6) join the records: units of a component on their way
-- into its stock. They live in lodestone_records like every other kind;
-- the kinds a record may have are now checked, so that no writer of another
-- version can store a record this service cannot read.

COMMENT ON COLUMN lodestone_records.kind IS
    '1 material, 2 supplier, 3 component, 4 line, 5 licence, 6 shipment';

ALTER TABLE lodestone_records
    ADD CONSTRAINT lodestone_records_kind CHECK (kind BETWEEN 1 AND 6);
