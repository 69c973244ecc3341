-- Console access tokens (Nova's console_auth_tokens): the URL of a remote
-- console carries a random token; only its SHA-256 is kept. A token is valid
-- until it expires, for any number of connections.
CREATE TABLE console_auth_tokens (
    token_hash TEXT PRIMARY KEY,
    instance_id TEXT NOT NULL,
    console_type TEXT NOT NULL,
    host TEXT NOT NULL,
    expires BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX console_auth_tokens_instance ON console_auth_tokens (instance_id);
CREATE INDEX console_auth_tokens_expires ON console_auth_tokens (expires);
