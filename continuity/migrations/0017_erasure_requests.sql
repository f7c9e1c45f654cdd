-- Erasure requests and legal holds: the compliance officers' records, which outlive the subject's
-- erasure (evidence that a request was received and carried out) and so hold no personal data in
-- clear. Ids, states, roles and times are clear; the free text an officer gives (a reason, a
-- ticket reference) and a customer's device name are sealed with the system data key
-- `erasure-requests` (key_version), a hold's reason with `legal-holds`: no erasure destroys them. `certificate` is the
-- signed certificate of a completed request, as issued (JSON, no personal data).
CREATE TABLE erasure_requests (
    request_id     uuid        PRIMARY KEY,
    subject_id     uuid        NOT NULL,
    state          text        NOT NULL
        CHECK (state IN ('received', 'executing', 'completed', 'blocked', 'failed')),
    requested_role text        NOT NULL CHECK (requested_role IN ('compliance', 'customer')),
    requested_by   uuid        NOT NULL,
    device_id      uuid,
    key_version    integer     NOT NULL,
    device         bytea,
    reason         bytea,
    reference      bytea,
    failure        text,
    attempts       integer     NOT NULL DEFAULT 0,
    received_at    timestamptz NOT NULL DEFAULT now(),
    executing_at   timestamptz,
    blocked_at     timestamptz,
    completed_at   timestamptz,
    failed_at      timestamptz,
    certificate    text
);
-- One request per subject stands at a time: a second is answered with the first, unless the
-- first failed (then a new one may try again).
CREATE UNIQUE INDEX erasure_requests_one_per_subject ON erasure_requests (subject_id)
    WHERE state <> 'failed';
CREATE INDEX erasure_requests_by_time ON erasure_requests (received_at, request_id);
CREATE INDEX erasure_requests_unfinished ON erasure_requests (state)
    WHERE state IN ('received', 'executing', 'blocked');

-- The keyed hashes (as in `identifiers`) of an erased subject's email addresses and phone
-- numbers, copied before the erasure moved them to the suppression list: a second request by
-- email or phone finds the first request after the identifier no longer leads to the subject.
CREATE TABLE erasure_request_identifiers (
    digest     bytea NOT NULL,
    request_id uuid  NOT NULL REFERENCES erasure_requests (request_id),
    PRIMARY KEY (digest, request_id)
);

-- Legal holds: while one stands (lifted_at NULL), no erasure of the subject proceeds.
CREATE TABLE legal_holds (
    hold_id     bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_id  uuid        NOT NULL,
    placed_by   uuid        NOT NULL,
    placed_at   timestamptz NOT NULL DEFAULT now(),
    key_version integer     NOT NULL,
    reason      bytea       NOT NULL,
    lifted_by   uuid,
    lifted_at   timestamptz
);
CREATE UNIQUE INDEX legal_holds_standing ON legal_holds (subject_id) WHERE lifted_at IS NULL;
