-- Consent proofs: one row per choice recorded in a subject's consent ledger, written in the
-- transaction that appends the choice's event, so that the proof a choice was given or
-- withdrawn outlives the subject's erasure (the event itself dies with the subject's key).
-- Clear: the event's position in the log, the subject's pseudonymous id and the time. Sealed
-- with the system data key `consent-proofs` (key_version), which no erasure destroys: the
-- purpose, given or withdrawn, the policy version, the channel and the source, bound by the
-- associated data to the clear columns. Append-only, like the log.
CREATE TABLE consent_proofs (
    position    bigint      PRIMARY KEY,
    subject_id  uuid        NOT NULL,
    recorded_at timestamptz NOT NULL,
    key_version integer     NOT NULL,
    proof       bytea       NOT NULL
);
CREATE INDEX consent_proofs_subject_idx ON consent_proofs (subject_id, position);

CREATE TRIGGER consent_proofs_no_update_delete BEFORE UPDATE OR DELETE ON consent_proofs
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER consent_proofs_no_truncate BEFORE TRUNCATE ON consent_proofs
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON consent_proofs FROM PUBLIC;
