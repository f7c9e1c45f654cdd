-- Erasure destroys the keys first and counts the events it made unreadable afterwards, so its
-- cost does not grow with the history; NULL until counted (a crash in between leaves it so,
-- and the next erasure call of the subject counts it).
ALTER TABLE erased_subjects ALTER COLUMN events_unreadable DROP NOT NULL;
