-- Nova's internal integer flavor id ("instance_type_id"), which migration
-- records report (old_instance_type_id / new_instance_type_id) and which no
-- other API shows. Numbered in creation order.
ALTER TABLE flavors ADD COLUMN internal_id BIGINT;
UPDATE flavors SET internal_id = (
    SELECT COUNT(*) FROM flavors f2
    WHERE f2.created_at < flavors.created_at
       OR (f2.created_at = flavors.created_at AND f2.id <= flavors.id)
);
-- Kept on the migration, so the record outlives the flavor's deletion.
ALTER TABLE migrations ADD COLUMN old_instance_type_id BIGINT;
ALTER TABLE migrations ADD COLUMN new_instance_type_id BIGINT;
UPDATE migrations SET
    old_instance_type_id = (SELECT internal_id FROM flavors WHERE flavors.id = migrations.old_flavor_id),
    new_instance_type_id = (SELECT internal_id FROM flavors WHERE flavors.id = migrations.new_flavor_id);
