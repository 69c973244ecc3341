-- Identity (Keystone v3) schema.
-- Portable between SQLite and PostgreSQL: TEXT, BIGINT (flags are 0/1, times are
-- microseconds since the Unix epoch), no engine-specific types.

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX domains_name ON domains (name);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    parent_id TEXT REFERENCES projects (id),
    description TEXT NOT NULL DEFAULT '',
    enabled BIGINT NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX projects_domain_name ON projects (domain_id, name);
CREATE INDEX projects_parent ON projects (parent_id);

CREATE TABLE project_tags (
    project_id TEXT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    tag TEXT NOT NULL,
    PRIMARY KEY (project_id, tag)
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    enabled BIGINT NOT NULL DEFAULT 1,
    default_project_id TEXT,
    description TEXT,
    extra TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    failed_auth_count BIGINT NOT NULL DEFAULT 0,
    failed_auth_at BIGINT,
    last_active_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_domain_name ON users (domain_id, name);

-- Password history: the newest row per user is the current password.
CREATE TABLE passwords (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    self_service BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX passwords_user ON passwords (user_id, created_at);

CREATE TABLE groups (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL REFERENCES domains (id),
    description TEXT NOT NULL DEFAULT '',
    extra TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_domain_name ON groups (domain_id, name);

CREATE TABLE group_members (
    group_id TEXT NOT NULL REFERENCES groups (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- Global roles have domain_id '' (so that the unique index works on both engines).
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    domain_id TEXT NOT NULL DEFAULT '',
    description TEXT,
    options TEXT NOT NULL DEFAULT '{}',
    extra TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX roles_domain_name ON roles (domain_id, name);

CREATE TABLE implied_roles (
    prior_role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    implied_role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    PRIMARY KEY (prior_role_id, implied_role_id)
);

-- kind: UserProject, GroupProject, UserDomain, GroupDomain, UserSystem, GroupSystem.
-- System assignments have target_id 'system'.
CREATE TABLE assignments (
    kind TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    target_id TEXT NOT NULL,
    role_id TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    inherited BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, actor_id, target_id, role_id, inherited)
);
CREATE INDEX assignments_actor ON assignments (actor_id);
CREATE INDEX assignments_target ON assignments (target_id);
CREATE INDEX assignments_role ON assignments (role_id);

CREATE TABLE regions (
    id TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    parent_region_id TEXT REFERENCES regions (id),
    extra TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE services (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    name TEXT,
    description TEXT,
    enabled BIGINT NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}'
);

CREATE TABLE endpoints (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    interface TEXT NOT NULL,
    url TEXT NOT NULL,
    region_id TEXT REFERENCES regions (id),
    enabled BIGINT NOT NULL DEFAULT 1,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX endpoints_service ON endpoints (service_id);

CREATE TABLE application_credentials (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT,
    secret_hash TEXT NOT NULL,
    description TEXT,
    expires_at BIGINT,
    unrestricted BIGINT NOT NULL DEFAULT 0,
    system TEXT,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX application_credentials_user_name ON application_credentials (user_id, name);

CREATE TABLE application_credential_roles (
    application_credential_id TEXT NOT NULL REFERENCES application_credentials (id) ON DELETE CASCADE,
    role_id TEXT NOT NULL,
    PRIMARY KEY (application_credential_id, role_id)
);

CREATE TABLE access_rules (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    service TEXT NOT NULL,
    path TEXT NOT NULL,
    method TEXT NOT NULL
);
CREATE UNIQUE INDEX access_rules_unique ON access_rules (user_id, service, path, method);

CREATE TABLE application_credential_access_rules (
    application_credential_id TEXT NOT NULL REFERENCES application_credentials (id) ON DELETE CASCADE,
    access_rule_id TEXT NOT NULL REFERENCES access_rules (id),
    PRIMARY KEY (application_credential_id, access_rule_id)
);

CREATE TABLE credentials (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    project_id TEXT,
    type TEXT NOT NULL,
    encrypted_blob TEXT NOT NULL,
    extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX credentials_user ON credentials (user_id);

-- Fernet key repository, shared by every control-plane process.
-- idx 0 is the staged key, the highest idx the primary, the rest secondary.
CREATE TABLE fernet_keys (
    repo TEXT NOT NULL,
    idx BIGINT NOT NULL,
    key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (repo, idx)
);

CREATE TABLE revocation_events (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    project_id TEXT,
    domain_id TEXT,
    audit_id TEXT,
    audit_chain_id TEXT,
    role_id TEXT,
    issued_before BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT
);

CREATE TABLE registered_limits (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES services (id),
    region_id TEXT NOT NULL DEFAULT '',
    resource_name TEXT NOT NULL,
    default_limit BIGINT NOT NULL,
    description TEXT
);
CREATE UNIQUE INDEX registered_limits_unique ON registered_limits (service_id, region_id, resource_name);

CREATE TABLE limits (
    id TEXT PRIMARY KEY,
    project_id TEXT,
    domain_id TEXT,
    service_id TEXT NOT NULL REFERENCES services (id),
    region_id TEXT NOT NULL DEFAULT '',
    resource_name TEXT NOT NULL,
    resource_limit BIGINT NOT NULL,
    description TEXT
);

-- Monotonic counters that every process reads to learn that cached state is stale.
CREATE TABLE revisions (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO revisions (name, value) VALUES ('identity', 1);
