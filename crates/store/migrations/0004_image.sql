-- Image service (Glance v2) schema.
-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only (flags 0/1,
-- times in microseconds since the Unix epoch).

CREATE TABLE images (
    id TEXT PRIMARY KEY,
    name TEXT,
    -- queued, saving, active, killed, deleted, pending_delete, deactivated,
    -- uploading, importing
    status TEXT NOT NULL,
    visibility TEXT NOT NULL,
    protected BIGINT NOT NULL DEFAULT 0,
    os_hidden BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    disk_format TEXT,
    container_format TEXT,
    size BIGINT,
    virtual_size BIGINT,
    checksum TEXT,
    os_hash_algo TEXT,
    os_hash_value TEXT,
    min_disk BIGINT NOT NULL DEFAULT 0,
    min_ram BIGINT NOT NULL DEFAULT 0,
    -- Where the data is (a store URL) and which store holds it.
    location TEXT,
    store TEXT,
    -- Bytes in the staging area (interoperable import), else NULL.
    staged_size BIGINT,
    -- The upload or import currently writing data (a random id), so that a
    -- finished or abandoned writer only changes the image it started on.
    writer TEXT,
    created_at BIGINT NOT NULL,
    -- Also the heartbeat of a running upload.
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX images_owner ON images (owner, status);
CREATE INDEX images_visibility ON images (visibility, status);
CREATE INDEX images_created ON images (created_at, id);
CREATE INDEX images_status ON images (status, updated_at);

CREATE TABLE image_properties (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT,
    PRIMARY KEY (image_id, name)
);
CREATE INDEX image_properties_name ON image_properties (name);

CREATE TABLE image_tags (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (image_id, tag)
);
CREATE INDEX image_tags_tag ON image_tags (tag);

CREATE TABLE image_members (
    image_id TEXT NOT NULL REFERENCES images (id) ON DELETE CASCADE,
    member TEXT NOT NULL,
    -- pending, accepted, rejected
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (image_id, member)
);
CREATE INDEX image_members_member ON image_members (member, status);

-- Asynchronous work on images (interoperable import).
CREATE TABLE image_tasks (
    id TEXT PRIMARY KEY,
    image_id TEXT,
    kind TEXT NOT NULL,
    -- pending, processing, success, failure
    status TEXT NOT NULL,
    owner TEXT,
    user_id TEXT,
    request_id TEXT,
    input TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    message TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    expires_at BIGINT
);
CREATE INDEX image_tasks_image ON image_tasks (image_id);

-- Metadata definitions catalog.
CREATE TABLE metadef_namespaces (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    display_name TEXT,
    description TEXT,
    visibility TEXT NOT NULL,
    protected BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_namespaces_namespace ON metadef_namespaces (namespace);

CREATE TABLE metadef_objects (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT,
    required TEXT NOT NULL DEFAULT '[]',
    properties TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_objects_name ON metadef_objects (namespace_id, name);

CREATE TABLE metadef_properties (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    json_schema TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_properties_name ON metadef_properties (namespace_id, name);

CREATE TABLE metadef_tags (
    id TEXT PRIMARY KEY,
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_tags_name ON metadef_tags (namespace_id, name);

CREATE TABLE metadef_resource_types (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    protected BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX metadef_resource_types_name ON metadef_resource_types (name);

CREATE TABLE metadef_resource_type_associations (
    namespace_id TEXT NOT NULL REFERENCES metadef_namespaces (id) ON DELETE CASCADE,
    resource_type_id TEXT NOT NULL REFERENCES metadef_resource_types (id),
    prefix TEXT,
    properties_target TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (namespace_id, resource_type_id)
);
