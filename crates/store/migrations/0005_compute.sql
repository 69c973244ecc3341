-- Compute service (Nova v2.1) schema.
-- Portable between SQLite and PostgreSQL: TEXT and BIGINT only (flags 0/1,
-- times in microseconds since the Unix epoch, JSON documents as TEXT).

CREATE TABLE flavors (
    -- The user-visible flavor id (Nova's `flavorid`): any string.
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    root_gb BIGINT NOT NULL,
    ephemeral_gb BIGINT NOT NULL DEFAULT 0,
    swap BIGINT NOT NULL DEFAULT 0,
    -- A decimal number as text (Nova's rxtx_factor is a float).
    rxtx_factor TEXT NOT NULL DEFAULT '1.0',
    is_public BIGINT NOT NULL DEFAULT 1,
    disabled BIGINT NOT NULL DEFAULT 0,
    description TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);

CREATE TABLE flavor_extra_specs (
    flavor_id TEXT NOT NULL REFERENCES flavors (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (flavor_id, key)
);

CREATE TABLE flavor_projects (
    flavor_id TEXT NOT NULL REFERENCES flavors (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    PRIMARY KEY (flavor_id, project_id)
);

CREATE TABLE keypairs (
    id BIGINT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    -- ssh or x509
    type TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, name)
);

-- Compute services (nova-compute, nova-scheduler, nova-conductor as
-- os-services shows them). `last_seen_up` is the heartbeat.
CREATE TABLE compute_services (
    id TEXT PRIMARY KEY,
    binary_name TEXT NOT NULL,
    host TEXT NOT NULL,
    zone TEXT NOT NULL DEFAULT 'internal',
    disabled BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    forced_down BIGINT NOT NULL DEFAULT 0,
    last_seen_up BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT,
    UNIQUE (binary_name, host)
);

-- One hypervisor per compute host; its id is also its resource provider's
-- uuid in placement.
CREATE TABLE compute_nodes (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL UNIQUE,
    hypervisor_hostname TEXT NOT NULL,
    hypervisor_type TEXT NOT NULL,
    hypervisor_version BIGINT NOT NULL DEFAULT 0,
    host_ip TEXT,
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    local_gb BIGINT NOT NULL,
    -- JSON: arch, vendor, model, topology, features
    cpu_info TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);

CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    -- Where it runs (NULL until scheduled, and while shelved-offloaded).
    host TEXT,
    node TEXT,
    availability_zone TEXT,
    -- The flavor as it was at boot (JSON), and during a resize the old one.
    flavor TEXT NOT NULL,
    old_flavor TEXT,
    -- The flavor's sizes, as columns for quota usage and weighing.
    vcpus BIGINT NOT NULL,
    memory_mb BIGINT NOT NULL,
    root_gb BIGINT NOT NULL,
    image_ref TEXT NOT NULL DEFAULT '',
    key_name TEXT,
    key_data TEXT,
    user_data TEXT,
    config_drive TEXT NOT NULL DEFAULT '',
    hostname TEXT NOT NULL,
    description TEXT,
    access_ip_v4 TEXT,
    access_ip_v6 TEXT,
    vm_state TEXT NOT NULL,
    task_state TEXT,
    power_state BIGINT NOT NULL DEFAULT 0,
    progress BIGINT NOT NULL DEFAULT 0,
    locked_by TEXT,
    locked_reason TEXT,
    reservation_id TEXT NOT NULL,
    launch_index BIGINT NOT NULL DEFAULT 0,
    -- JSON: what the scheduler was asked (group, hints, az, ...), kept for
    -- rebuild / unshelve / resize.
    request_spec TEXT NOT NULL DEFAULT '{}',
    -- JSON: vm_state and power_state to go back to (rescue, resize revert,
    -- shelve), and other per-operation bookkeeping.
    system_metadata TEXT NOT NULL DEFAULT '{}',
    launched_at BIGINT,
    terminated_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX instances_project ON instances (project_id, deleted_at, created_at);
CREATE INDEX instances_host ON instances (host, deleted_at);
CREATE INDEX instances_created ON instances (created_at, id);
CREATE INDEX instances_updated ON instances (updated_at);
CREATE INDEX instances_task ON instances (task_state);

CREATE TABLE instance_metadata (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (instance_id, key)
);

CREATE TABLE instance_tags (
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (instance_id, tag)
);
CREATE INDEX instance_tags_tag ON instance_tags (tag);

CREATE TABLE instance_faults (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    code BIGINT NOT NULL,
    message TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '',
    host TEXT,
    created_at BIGINT NOT NULL
);
CREATE INDEX instance_faults_instance ON instance_faults (instance_id, created_at);

CREATE TABLE instance_actions (
    id TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    request_id TEXT NOT NULL,
    user_id TEXT,
    project_id TEXT,
    message TEXT,
    start_time BIGINT NOT NULL,
    finish_time BIGINT,
    updated_at BIGINT NOT NULL
);
CREATE INDEX instance_actions_instance ON instance_actions (instance_id, start_time);

CREATE TABLE instance_action_events (
    id TEXT PRIMARY KEY,
    action_id TEXT NOT NULL REFERENCES instance_actions (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    result TEXT,
    traceback TEXT,
    host TEXT,
    start_time BIGINT NOT NULL,
    finish_time BIGINT
);
CREATE INDEX instance_action_events_action ON instance_action_events (action_id, start_time);

-- Operations the control plane asked a host agent for and has not seen
-- finished: the reconciler completes or rolls them back after a crash.
CREATE TABLE compute_operations (
    instance_id TEXT PRIMARY KEY REFERENCES instances (id) ON DELETE CASCADE,
    op TEXT NOT NULL,
    host TEXT,
    -- JSON arguments of the operation
    args TEXT NOT NULL DEFAULT '{}',
    -- The API process that drives it, and its last heartbeat.
    owner TEXT NOT NULL,
    heartbeat BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE server_groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    policy TEXT NOT NULL,
    -- JSON object, e.g. {"max_server_per_host": 2}
    rules TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);

CREATE TABLE server_group_members (
    group_id TEXT NOT NULL REFERENCES server_groups (id) ON DELETE CASCADE,
    instance_id TEXT NOT NULL,
    PRIMARY KEY (group_id, instance_id)
);
CREATE INDEX server_group_members_instance ON server_group_members (instance_id);

CREATE TABLE aggregates (
    id BIGINT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);

CREATE TABLE aggregate_hosts (
    aggregate_id BIGINT NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    host TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, host)
);

CREATE TABLE aggregate_metadata (
    aggregate_id BIGINT NOT NULL REFERENCES aggregates (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (aggregate_id, key)
);

-- Quota limits per project ('' user) or per project user, and per class.
CREATE TABLE compute_quotas (
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL DEFAULT '',
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id, resource)
);

CREATE TABLE compute_quota_classes (
    class_name TEXT NOT NULL,
    resource TEXT NOT NULL,
    hard_limit BIGINT NOT NULL,
    PRIMARY KEY (class_name, resource)
);

CREATE TABLE migrations (
    id BIGINT PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    instance_id TEXT NOT NULL,
    migration_type TEXT NOT NULL,
    status TEXT NOT NULL,
    source_compute TEXT,
    dest_compute TEXT,
    source_node TEXT,
    dest_node TEXT,
    old_flavor_id TEXT,
    new_flavor_id TEXT,
    project_id TEXT,
    user_id TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT
);
CREATE INDEX migrations_instance ON migrations (instance_id, created_at);
