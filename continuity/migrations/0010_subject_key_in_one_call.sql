-- A subject's current key for writing, created if it has none, in one call: creating one took a
-- read, then a transaction of four statements (six round trips), on every new subject's first
-- action. The caller passes a freshly wrapped key, used only if there is none yet.
--
-- An existing key is answered as it is (shredding deletes a subject's keys, so a key found means
-- not erased). Otherwise, under the subject's key lock (the one shredding takes), the tombstone
-- is checked in a statement of its own, whose snapshot follows the wait for that lock, so an
-- erasure committed meanwhile is seen: 'CY410'. A creation racing another for the same subject
-- keeps the first key written.
CREATE FUNCTION subject_keys_current(
    p_subject_id  uuid,
    p_kek_id      text,
    p_wrapped_key bytea,
    OUT key_version integer,
    OUT kek_id      text,
    OUT wrapped_key bytea
) LANGUAGE plpgsql AS $$
BEGIN
    SELECT k.key_version, k.kek_id, k.wrapped_key INTO key_version, kek_id, wrapped_key
      FROM subject_keys k WHERE k.subject_id = p_subject_id
     ORDER BY k.key_version DESC LIMIT 1;
    IF FOUND THEN
        RETURN;
    END IF;
    PERFORM pg_advisory_xact_lock(1801812339, hashtext(p_subject_id::text));  -- "keys"
    IF EXISTS (SELECT FROM erased_subjects WHERE subject_id = p_subject_id) THEN
        RAISE EXCEPTION 'subject % has been erased', p_subject_id
            USING ERRCODE = 'CY410', DETAIL = p_subject_id::text;
    END IF;
    INSERT INTO subject_keys (subject_id, key_version, kek_id, wrapped_key)
    VALUES (p_subject_id, 1, p_kek_id, p_wrapped_key)
    ON CONFLICT DO NOTHING;
    SELECT k.key_version, k.kek_id, k.wrapped_key INTO key_version, kek_id, wrapped_key
      FROM subject_keys k WHERE k.subject_id = p_subject_id
     ORDER BY k.key_version DESC LIMIT 1;
END $$;
