-- The session projection: the resume view per customer, encrypted with the subject's key.
-- Clear columns are non-personal: pseudonymous ids, counters and times.
CREATE TABLE session_views (
    subject_id   uuid        PRIMARY KEY,
    cart_id      uuid,
    key_version  integer     NOT NULL,
    position     bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    body         bytea       NOT NULL
);
