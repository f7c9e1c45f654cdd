-- The access audit: one row per agent read of a customer's data, evidence of processing that
-- must outlive the customer's erasure. Who read (the agent's id), whose data (the subject's
-- pseudonymous id), what (the route's template and the resource's id) and when are clear; the
-- purpose the agent gave (free text, which may name anyone) is sealed with the system data key
-- `access-audit` (key_version), which no erasure destroys. Append-only, like the log.
CREATE TABLE access_audit (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    read_at     timestamptz NOT NULL DEFAULT now(),
    agent_id    uuid        NOT NULL,
    subject_id  uuid        NOT NULL,
    what        text        NOT NULL,
    resource_id uuid,
    key_version integer     NOT NULL,
    purpose     bytea       NOT NULL
);
CREATE INDEX access_audit_subject_idx ON access_audit (subject_id, read_at);
CREATE INDEX access_audit_agent_idx ON access_audit (agent_id, read_at);

CREATE TRIGGER access_audit_no_update_delete BEFORE UPDATE OR DELETE ON access_audit
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER access_audit_no_truncate BEFORE TRUNCATE ON access_audit
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON access_audit FROM PUBLIC;
