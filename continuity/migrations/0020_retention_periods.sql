-- Retention by age (issue 12): a subject's data keys roll over per period and per class, and
-- retention destroys the keys of expired periods, so old events read as placeholders while the
-- log keeps every row.
--
-- `key_version` stays one increasing number per subject (whatever the class), so every reader
-- that asks for (subject_id, key_version) is unchanged. A key now says which data it seals
-- (`key_class`: 'general', or 'conversation' for transcript turns) and when it was written with
-- (`not_before` .. `not_after`). Keys from before this migration have neither: no period, not a
-- 1970 one; the first write under a configured period closes such a key at that moment.
ALTER TABLE subject_keys
    ADD COLUMN key_class  text        NOT NULL DEFAULT 'general',
    ADD COLUMN not_before timestamptz,
    ADD COLUMN not_after  timestamptz;
CREATE INDEX subject_keys_expiry_idx ON subject_keys (key_class, not_after)
    WHERE not_after IS NOT NULL;

-- A tombstone per key destroyed by retention: a row sealed with one reads as a placeholder (not
-- an integrity violation), and its version is never used again. Non-personal.
CREATE TABLE expired_subject_keys (
    subject_id  uuid        NOT NULL,
    key_version integer     NOT NULL,
    key_class   text        NOT NULL,
    not_before  timestamptz,
    not_after   timestamptz NOT NULL,
    expired_at  timestamptz NOT NULL DEFAULT now(),
    run_id      uuid        NOT NULL,
    PRIMARY KEY (subject_id, key_version)
);

-- One row per policy of each retention run: what it made unreadable. Non-personal (counts).
CREATE TABLE retention_runs (
    run_id            uuid        NOT NULL,
    policy            text        NOT NULL,
    max_age           interval    NOT NULL,
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz NOT NULL DEFAULT now(),
    subjects          integer     NOT NULL,
    keys_destroyed    integer     NOT NULL,
    events_unreadable bigint      NOT NULL,
    projection_rows_deleted bigint NOT NULL,
    PRIMARY KEY (run_id, policy)
);

-- The subject's key of class `p_class` for writing at `p_now`, created when there is none or
-- its period has ended (`p_period`; NULL: keys do not roll over), in one call while the key
-- lasts. The caller passes a key wrapped for version `p_version` (its guess of the next one);
-- when the next version is another, only `key_version` is answered and the caller wraps for it
-- and calls again (once per subject and class per period).
--
-- As in subject_keys_current (0010): the lock shredding takes, the tombstone checked in a
-- statement of its own after the wait, and a creation racing another keeps the first key.
-- Creating a key closes the class's open one at `p_now`, so the key for writing is always the
-- class's newest; a version is never reused, not even a destroyed one's.
CREATE FUNCTION subject_keys_for_writing(
    p_subject_id  uuid,
    p_class       text,
    p_now         timestamptz,
    p_period      interval,
    p_version     integer,
    p_kek_id      text,
    p_wrapped_key bytea,
    OUT key_version integer,
    OUT kek_id      text,
    OUT wrapped_key bytea,
    OUT not_after   timestamptz
) LANGUAGE plpgsql AS $$
DECLARE
    v_next integer;
BEGIN
    SELECT k.key_version, k.kek_id, k.wrapped_key, k.not_after
      INTO key_version, kek_id, wrapped_key, not_after
      FROM subject_keys k WHERE k.subject_id = p_subject_id AND k.key_class = p_class
     ORDER BY k.key_version DESC LIMIT 1;
    IF FOUND AND ((p_period IS NULL AND not_after IS NULL)
                  OR (p_period IS NOT NULL AND not_after > p_now)) THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1801812339, hashtext(p_subject_id::text));  -- "keys"
    IF EXISTS (SELECT FROM erased_subjects WHERE subject_id = p_subject_id) THEN
        RAISE EXCEPTION 'subject % has been erased', p_subject_id
            USING ERRCODE = 'CY410', DETAIL = p_subject_id::text;
    END IF;
    SELECT k.key_version, k.kek_id, k.wrapped_key, k.not_after
      INTO key_version, kek_id, wrapped_key, not_after
      FROM subject_keys k WHERE k.subject_id = p_subject_id AND k.key_class = p_class
     ORDER BY k.key_version DESC LIMIT 1;
    IF FOUND AND ((p_period IS NULL AND not_after IS NULL)
                  OR (p_period IS NOT NULL AND not_after > p_now)) THEN
        RETURN;  -- another process created it while this one waited
    END IF;
    SELECT greatest(
               (SELECT max(k.key_version) FROM subject_keys k WHERE k.subject_id = p_subject_id),
               (SELECT max(x.key_version) FROM expired_subject_keys x
                 WHERE x.subject_id = p_subject_id),
               0) + 1
      INTO v_next;
    IF v_next <> p_version THEN
        key_version := v_next;
        kek_id := NULL;
        wrapped_key := NULL;
        not_after := NULL;
        RETURN;
    END IF;
    UPDATE subject_keys k SET not_after = p_now
     WHERE k.subject_id = p_subject_id AND k.key_class = p_class
       AND (k.not_after IS NULL OR k.not_after > p_now);
    INSERT INTO subject_keys (subject_id, key_version, kek_id, wrapped_key, key_class,
                              not_before, not_after)
    VALUES (p_subject_id, v_next, p_kek_id, p_wrapped_key, p_class, p_now, p_now + p_period);
    key_version := v_next;
    kek_id := p_kek_id;
    wrapped_key := p_wrapped_key;
    not_after := p_now + p_period;
END $$;
