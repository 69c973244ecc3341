-- Limits keep their service id when the service is deleted (as upstream):
-- rebuild both tables without the foreign key.
CREATE TABLE registered_limits_v2 (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL,
    region_id TEXT NOT NULL DEFAULT '',
    resource_name TEXT NOT NULL,
    default_limit BIGINT NOT NULL,
    description TEXT
);
INSERT INTO registered_limits_v2 (id, service_id, region_id, resource_name, default_limit, description)
    SELECT id, service_id, region_id, resource_name, default_limit, description FROM registered_limits;
DROP TABLE registered_limits;
ALTER TABLE registered_limits_v2 RENAME TO registered_limits;
CREATE UNIQUE INDEX registered_limits_unique ON registered_limits (service_id, region_id, resource_name);

CREATE TABLE limits_v2 (
    id TEXT PRIMARY KEY,
    project_id TEXT,
    domain_id TEXT,
    service_id TEXT NOT NULL,
    region_id TEXT NOT NULL DEFAULT '',
    resource_name TEXT NOT NULL,
    resource_limit BIGINT NOT NULL,
    description TEXT
);
INSERT INTO limits_v2 (id, project_id, domain_id, service_id, region_id, resource_name, resource_limit, description)
    SELECT id, project_id, domain_id, service_id, region_id, resource_name, resource_limit, description FROM limits;
DROP TABLE limits;
ALTER TABLE limits_v2 RENAME TO limits;

-- /v3/policies: opaque policy blobs.
CREATE TABLE policy_blobs (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    blob TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}'
);

-- OS-EP-FILTER: endpoints associated with projects, directly or by group.
CREATE TABLE project_endpoints (
    project_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    PRIMARY KEY (project_id, endpoint_id)
);
CREATE TABLE endpoint_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT,
    filters TEXT NOT NULL
);
CREATE TABLE project_endpoint_groups (
    endpoint_group_id TEXT NOT NULL,
    project_id TEXT NOT NULL,
    PRIMARY KEY (endpoint_group_id, project_id)
);

-- OS-FEDERATION: identity providers, their protocols, mappings, service providers.
CREATE TABLE identity_providers (
    id TEXT PRIMARY KEY,
    enabled BIGINT NOT NULL DEFAULT 1,
    description TEXT,
    domain_id TEXT NOT NULL,
    authorization_ttl BIGINT
);
CREATE TABLE idp_remote_ids (
    remote_id TEXT PRIMARY KEY,
    idp_id TEXT NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE
);
CREATE TABLE federation_protocols (
    id TEXT NOT NULL,
    idp_id TEXT NOT NULL REFERENCES identity_providers (id) ON DELETE CASCADE,
    mapping_id TEXT NOT NULL,
    remote_id_attribute TEXT,
    PRIMARY KEY (id, idp_id)
);
CREATE TABLE mappings (
    id TEXT PRIMARY KEY,
    rules TEXT NOT NULL,
    schema_version TEXT NOT NULL DEFAULT '1.0'
);
CREATE TABLE service_providers (
    id TEXT PRIMARY KEY,
    enabled BIGINT NOT NULL DEFAULT 1,
    description TEXT,
    auth_url TEXT NOT NULL,
    sp_url TEXT NOT NULL,
    relay_state_prefix TEXT NOT NULL DEFAULT 'ss:mem:'
);
