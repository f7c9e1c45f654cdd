-- Keys that belong to no data subject, so no erasure destroys them: system data keys
-- (AES-256-GCM) for records that must outlive a subject's erasure without personal data
-- (erasure certificates and journal, consent proofs, the access audit, analytics), and signing
-- keys (Ed25519) for certificates. One row per kind, purpose (name) and version; the highest
-- version is current. Stored only wrapped by the master key (KEK), like subject_keys, and
-- re-wrapped with them on rotation. `public_key` is the clear public half of a signing key.
CREATE TABLE system_keys (
    kind        text        NOT NULL CHECK (kind IN ('aes-256-gcm', 'ed25519')),
    name        text        NOT NULL CHECK (name <> ''),
    key_version integer     NOT NULL CHECK (key_version > 0),
    kek_id      text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    public_key  bytea,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, name, key_version),
    CHECK ((kind = 'ed25519') = (public_key IS NOT NULL))
);
CREATE INDEX system_keys_kek_idx ON system_keys (kek_id);
