-- Per-subject data keys, stored only wrapped by the master key (KEK). This table is the only place
-- keys live: deleting a subject's rows here crypto-shreds every copy of their data.
CREATE TABLE subject_keys (
    subject_id  uuid        NOT NULL,
    key_version integer     NOT NULL,
    kek_id      text        NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subject_id, key_version)
);
CREATE INDEX subject_keys_kek_idx ON subject_keys (kek_id);

-- A tombstone per erased subject, so a later write cannot quietly create a new key.
CREATE TABLE erased_subjects (
    subject_id        uuid        PRIMARY KEY,
    erased_at         timestamptz NOT NULL DEFAULT now(),
    key_versions      integer[]   NOT NULL,
    events_unreadable bigint      NOT NULL
);
