-- Processes, broadcasts, devices, guests and handoff codes (issue 11).

-- Every running API process: an identity, a heartbeat, and the last broadcast it applied (its
-- acknowledgement). A sender waits for the live ones (recent heartbeat, not stopped).
CREATE TABLE processes (
    process_id   uuid        PRIMARY KEY,
    host         text        NOT NULL,
    pid          integer     NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    applied      bigint      NOT NULL DEFAULT 0,
    stopped_at   timestamptz
);

-- What every process must apply to its caches (a device revoked or moved), numbered in commit
-- order: a sender takes a transaction lock before its insert. Non-personal: a kind and an id.
CREATE TABLE broadcasts (
    seq     bigserial   PRIMARY KEY,
    kind    text        NOT NULL,
    target  uuid        NOT NULL,
    sent_at timestamptz NOT NULL DEFAULT now()
);

-- A customer's devices, each with its own token. The name is sealed with the owner's key;
-- `first_subject` is whom the token was issued for (a guest, later linked to a customer).
CREATE TABLE devices (
    device_id     uuid        PRIMARY KEY,
    subject_id    uuid        NOT NULL,
    first_subject uuid        NOT NULL,
    channel       text        NOT NULL,
    key_version   integer     NOT NULL,
    name          bytea       NOT NULL,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_seen     timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);
CREATE INDEX devices_subject_idx ON devices (subject_id);

-- Guest subjects (no account), and the customer each was linked to on sign-in. The link is
-- written before any of the guest's data moves, so erasing the customer finds the guest.
CREATE TABLE guests (
    subject_id  uuid        PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    linked_to   uuid,
    linked_at   timestamptz,
    merged_at   timestamptz
);
CREATE INDEX guests_linked_to_idx ON guests (linked_to) WHERE linked_to IS NOT NULL;

-- Handoff codes, known only by keyed hash: `lookup` of the code's first half, `secret` of the
-- whole code. Single use, expiring, burnt after too many wrong secrets.
CREATE TABLE handoff_codes (
    lookup     bytea       PRIMARY KEY,
    secret     bytea       NOT NULL,
    subject_id uuid        NOT NULL,
    device_id  uuid        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    expires_at timestamptz NOT NULL,
    used_at    timestamptz,
    failures   integer     NOT NULL DEFAULT 0
);
CREATE INDEX handoff_codes_subject_idx ON handoff_codes (subject_id);

-- Failed redemptions per client (a keyed hash of its address), in a fixed window, shared by
-- every process so that more processes do not mean more guesses.
CREATE TABLE redeem_failures (
    client       bytea       PRIMARY KEY,
    window_start timestamptz NOT NULL,
    failures     integer     NOT NULL
);
