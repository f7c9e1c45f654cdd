-- A subject's events in log order, from a position: what a live stream resuming from
-- Last-Event-ID reads (and a timeline or an export of one customer). The index on the subject
-- alone made that a sort of the customer's whole history; this one also serves every lookup
-- by subject that the old one did, so it replaces it.
CREATE INDEX events_subject_position_idx ON events (subject_id, position);
DROP INDEX events_subject_idx;
