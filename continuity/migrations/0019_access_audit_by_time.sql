-- The access audit read by time across every agent and subject (`GET /v1/privacy/audit`
-- without a filter): its keyset order, so a page reads only the rows it shows.
CREATE INDEX access_audit_read_at_idx ON access_audit (read_at, id);
