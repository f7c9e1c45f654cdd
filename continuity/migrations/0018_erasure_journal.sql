-- The erasure journal: one signed, chained entry per erased subject (their pseudonym, when, the
-- key versions destroyed; no personal data), written in the erasure's transaction and copied to
-- a file the operator keeps apart from the database's backups. After a restore,
-- `continuity erasures reapply` destroys again every journaled subject's keys that came back.
-- Each entry names the previous entry's hash, so an edited or shortened journal shows.
CREATE TABLE erasure_journal (
    sequence     bigint      PRIMARY KEY CHECK (sequence > 0),
    subject_id   uuid        NOT NULL UNIQUE,
    erased_at    timestamptz NOT NULL,
    key_versions integer[]   NOT NULL,
    previous     text        NOT NULL,
    key_id       text        NOT NULL,
    signature    text        NOT NULL,
    hash         text        NOT NULL UNIQUE,
    recorded_at  timestamptz NOT NULL DEFAULT now()
);

-- Append-only, like the log: an entry once written is what the chain was signed over.
CREATE FUNCTION erasure_journal_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the erasure journal is append-only: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER erasure_journal_no_update_delete BEFORE UPDATE OR DELETE ON erasure_journal
    FOR EACH ROW EXECUTE FUNCTION erasure_journal_refuse_change();
CREATE TRIGGER erasure_journal_no_truncate BEFORE TRUNCATE ON erasure_journal
    FOR EACH STATEMENT EXECUTE FUNCTION erasure_journal_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON erasure_journal FROM PUBLIC;

-- Which database this schema lives in: a restore (pg_restore always lands in a new database, a
-- new schema) changes it, and the server then refuses to start until the erasures are reapplied.
CREATE TABLE database_identity (
    only_row          boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    system_identifier bigint      NOT NULL,
    database_oid      bigint      NOT NULL,
    schema_oid        bigint      NOT NULL,
    recorded_at       timestamptz NOT NULL DEFAULT now(),
    reapplied_at      timestamptz
);
