-- Placement schema. Portable between SQLite and PostgreSQL: TEXT, BIGINT and
-- DOUBLE PRECISION (allocation ratios), times in microseconds since the epoch.
-- Rows reference providers, classes and traits by their external names
-- (uuid / name), which keeps the queries simple on both engines.

CREATE TABLE placement_resource_classes (
    name TEXT PRIMARY KEY,
    standard BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);

CREATE TABLE placement_traits (
    name TEXT PRIMARY KEY,
    standard BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);

CREATE TABLE placement_providers (
    uuid TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    generation BIGINT NOT NULL DEFAULT 0,
    parent_uuid TEXT REFERENCES placement_providers (uuid),
    root_uuid TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX placement_providers_name ON placement_providers (name);
CREATE INDEX placement_providers_parent ON placement_providers (parent_uuid);
CREATE INDEX placement_providers_root ON placement_providers (root_uuid);

CREATE TABLE placement_inventories (
    provider_uuid TEXT NOT NULL REFERENCES placement_providers (uuid) ON DELETE CASCADE,
    resource_class TEXT NOT NULL REFERENCES placement_resource_classes (name),
    total BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    min_unit BIGINT NOT NULL,
    max_unit BIGINT NOT NULL,
    step_size BIGINT NOT NULL,
    allocation_ratio DOUBLE PRECISION NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (provider_uuid, resource_class)
);
CREATE INDEX placement_inventories_class ON placement_inventories (resource_class);

CREATE TABLE placement_provider_traits (
    provider_uuid TEXT NOT NULL REFERENCES placement_providers (uuid) ON DELETE CASCADE,
    trait TEXT NOT NULL REFERENCES placement_traits (name),
    PRIMARY KEY (provider_uuid, trait)
);
CREATE INDEX placement_provider_traits_trait ON placement_provider_traits (trait);

CREATE TABLE placement_provider_aggregates (
    provider_uuid TEXT NOT NULL REFERENCES placement_providers (uuid) ON DELETE CASCADE,
    aggregate_uuid TEXT NOT NULL,
    PRIMARY KEY (provider_uuid, aggregate_uuid)
);
CREATE INDEX placement_provider_aggregates_agg ON placement_provider_aggregates (aggregate_uuid);

CREATE TABLE placement_consumer_types (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE placement_consumers (
    uuid TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    consumer_type TEXT REFERENCES placement_consumer_types (name),
    generation BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX placement_consumers_project ON placement_consumers (project_id, user_id);

CREATE TABLE placement_allocations (
    consumer_uuid TEXT NOT NULL REFERENCES placement_consumers (uuid) ON DELETE CASCADE,
    provider_uuid TEXT NOT NULL REFERENCES placement_providers (uuid),
    resource_class TEXT NOT NULL REFERENCES placement_resource_classes (name),
    used BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (consumer_uuid, provider_uuid, resource_class)
);
CREATE INDEX placement_allocations_provider ON placement_allocations (provider_uuid, resource_class);

-- What each write changed, so that every process can bring its in-memory
-- model up to date by reloading only those providers (no message bus).
-- kind: 'provider' (uuid = provider), 'classes', 'traits'.
CREATE TABLE placement_changes (
    revision BIGINT NOT NULL,
    kind TEXT NOT NULL,
    uuid TEXT NOT NULL DEFAULT ''
);
CREATE INDEX placement_changes_revision ON placement_changes (revision);

INSERT INTO revisions (name, value) VALUES ('placement', 0) ON CONFLICT DO NOTHING;
