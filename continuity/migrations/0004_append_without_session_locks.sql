-- Appends that can neither leave the log locked nor stall behind one another, and serialise with
-- erasure. Replaces 0001's append_events.
DROP FUNCTION append_events(uuid[], integer[], uuid[], uuid[], text[], text[], integer[], bytea[],
                            bytea[], uuid[], integer[]);

-- The cluster the log's transaction ids belong to. A logical restore into another cluster brings
-- tx_id values from the old one, which may be ahead of the new cluster's counter: readers would
-- then take newer rows while hiding restored ones. The server refuses to start until
-- `continuity log repair` has run (see continuity/log_origin.py).
CREATE TABLE log_origin (
    only_row          boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    system_identifier bigint      NOT NULL,
    checked_at        timestamptz NOT NULL DEFAULT now()
);

-- Append a batch atomically; returns each event's position and whether it was written now
-- (false: the whole batch was recorded before, with the same content: an idempotent retry).
--
-- Order without a lock held across anything that can wait: positions and the transaction id are
-- allocated together under a transaction-level advisory lock taken inside a block that always
-- ends by raising, so the block's subtransaction rolls back and releases the lock whatever
-- happens (a cancel, a timeout, an error) while the xid and the sequence values stay assigned.
-- Among appending transactions, position order therefore equals xid order, and a reader that
-- only takes rows below pg_snapshot_xmin(pg_current_snapshot()) never skips a late commit. No
-- session-level lock exists, so none can be left on a pooled connection. The INSERT runs after
-- the lock is gone: waiting there (on another transaction's uncommitted event_id) holds up no
-- other appender.
--
-- Before that, in a fixed order: each subject's erasure lock in SHARE mode (KeyVault.shred takes
-- it exclusively, so an erasure waits for the appends in flight and counts them, and every later
-- append sees the tombstone), then each stream's lock, so writers to one stream queue here and
-- the version check below cannot race.
--
-- Errors: CY409 wrong version (DETAIL '<stream> <actual version>'), CY410 erased subject
-- (DETAIL '<subject>'), CY422 an event_id already used for other content (DETAIL '<event_id>').
CREATE FUNCTION append_events(
    p_stream_ids        uuid[],
    p_versions          integer[],
    p_event_ids         uuid[],
    p_subject_ids       uuid[],
    p_topics            text[],
    p_channels          text[],
    p_recorded_at       timestamptz[],
    p_key_versions      integer[],
    p_digests           bytea[],
    p_payloads          bytea[],
    p_expected_streams  uuid[],
    p_expected_versions integer[]
) RETURNS TABLE (event_position bigint, written boolean) LANGUAGE plpgsql AS $$
DECLARE
    lock_key constant bigint := hashtext('continuity.append:' || current_schema());
    found_count integer;
    reused uuid;
    original bigint[];
    conflict record;
    erased uuid;
    tx xid8;
    positions bigint[];
    one uuid;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_events must be the first write of its transaction'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    FOR one IN SELECT DISTINCT s FROM unnest(p_subject_ids) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock_shared(1801812339, hashtext(one::text));  -- "keys"
    END LOOP;
    SELECT t.subject_id INTO erased
      FROM erased_subjects t WHERE t.subject_id = ANY (p_subject_ids) LIMIT 1;
    IF erased IS NOT NULL THEN
        RAISE EXCEPTION 'subject % has been erased', erased
            USING ERRCODE = 'CY410', DETAIL = erased::text;
    END IF;

    FOR one IN SELECT DISTINCT s FROM unnest(p_stream_ids) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1937011301, hashtext(one::text));  -- "stre"
    END LOOP;

    -- A retry of a recorded batch: one index probe per event (LIMIT keeps it a probe).
    SELECT count(e.position),
           (array_agg(b.event_id ORDER BY b.ord)
               FILTER (WHERE e.position IS NOT NULL AND (e.stream_id, e.topic, e.digest)
                       IS DISTINCT FROM (b.stream_id, b.topic, b.digest)))[1],
           array_agg(e.position ORDER BY b.ord)
      INTO found_count, reused, original
      FROM unnest(p_event_ids, p_stream_ids, p_topics, p_digests)
           WITH ORDINALITY AS b(event_id, stream_id, topic, digest, ord)
      LEFT JOIN LATERAL (
           SELECT x.position, x.stream_id, x.topic, x.digest FROM events x
            WHERE x.event_id = b.event_id LIMIT 1
      ) e ON true;
    IF reused IS NOT NULL OR found_count NOT IN (0, cardinality(p_event_ids)) THEN
        reused := coalesce(reused, (SELECT x.event_id FROM events x
                                     WHERE x.event_id = ANY (p_event_ids) LIMIT 1));
        RAISE EXCEPTION 'event_id % was already used for a different event', reused
            USING ERRCODE = 'CY422', DETAIL = reused::text;
    END IF;
    IF found_count > 0 THEN
        RETURN QUERY SELECT p, false FROM unnest(original) AS p;
        RETURN;
    END IF;

    -- Every stream of the batch: at its expected version, or (none given) below the batch.
    SELECT s.stream_id, s.actual INTO conflict
      FROM (SELECT b.stream_id, min(b.version) AS first_version,
                   (SELECT max(x.version) FROM events x WHERE x.stream_id = b.stream_id) AS actual
              FROM unnest(p_stream_ids, p_versions) AS b(stream_id, version)
             GROUP BY b.stream_id) s
      LEFT JOIN unnest(p_expected_streams, p_expected_versions) AS w(stream_id, version)
        ON w.stream_id = s.stream_id
     WHERE CASE WHEN w.stream_id IS NOT NULL
                THEN s.actual IS DISTINCT FROM nullif(w.version, 0)
                ELSE s.actual >= s.first_version END
     LIMIT 1;
    IF conflict.stream_id IS NOT NULL THEN
        RAISE EXCEPTION 'wrong expected version for stream %', conflict.stream_id
            USING ERRCODE = 'CY409',
                  DETAIL = conflict.stream_id::text || ' ' || coalesce(conflict.actual, 0);
    END IF;

    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        tx := pg_current_xact_id();
        positions := ARRAY(SELECT nextval('events_position_seq')
                             FROM generate_series(1, cardinality(p_event_ids)));
        RAISE EXCEPTION USING ERRCODE = 'CY000';  -- roll the block back: releases the lock
    EXCEPTION WHEN SQLSTATE 'CY000' THEN
        NULL;
    END;

    INSERT INTO events (position, tx_id, stream_id, version, event_id, subject_id, topic, channel,
                        recorded_at, key_version, digest, payload)
    SELECT b.position, tx, b.stream_id, b.version, b.event_id, b.subject_id, b.topic, b.channel,
           b.recorded_at, b.key_version, b.digest, b.payload
      FROM unnest(positions, p_stream_ids, p_versions, p_event_ids, p_subject_ids, p_topics,
                  p_channels, p_recorded_at, p_key_versions, p_digests, p_payloads)
           AS b(position, stream_id, version, event_id, subject_id, topic, channel, recorded_at,
                key_version, digest, payload);
    RETURN QUERY SELECT p, true FROM unnest(positions) AS p;
END $$;
