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

-- Append a batch atomically and return its positions.
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
-- Before that, in one ordered statement: each subject's erasure lock in SHARE mode
-- (KeyVault.shred takes it exclusively, so an erasure waits for the appends in flight and counts
-- them, and every later append sees the tombstone), then each stream's lock, so writers to one
-- stream queue there and the version check cannot race.
--
-- Errors: CY409 wrong version (DETAIL '<stream> <actual version>'; the caller then tells an
-- identical retry from a conflict), CY410 erased subject (DETAIL '<subject>'), and a unique
-- violation on event_id (a retry or a reuse, told apart the same way).
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
) RETURNS bigint[] LANGUAGE plpgsql
-- Custom plans were chosen for these parameterised queries and re-planned on every call (a
-- quarter of a millisecond per append): their generic plans are the right ones.
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    lock_key constant bigint := hashtext('continuity.append:' || current_schema());
    erased uuid;
    stale_stream uuid;
    stale_actual integer;
    tx xid8;
    positions bigint[];
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_events must be the first write of its transaction'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;

    PERFORM CASE l.kind
                WHEN 0 THEN pg_advisory_xact_lock_shared(1801812339, hashtext(l.id::text))
                ELSE pg_advisory_xact_lock(1937011301, hashtext(l.id::text)) END  -- "keys", "stre"
       FROM (SELECT 0 AS kind, s AS id FROM unnest(p_subject_ids) AS s
             UNION SELECT 1, s FROM unnest(p_stream_ids) AS s
             ORDER BY 1, 2) AS l;

    -- In a statement of its own, so that its snapshot follows the waits above: the tombstones,
    -- and every stream at its expected version or (none given) below the batch's first.
    SELECT (SELECT t.subject_id FROM erased_subjects t
             WHERE t.subject_id = ANY (p_subject_ids) LIMIT 1),
           v.stream_id, v.actual
      INTO erased, stale_stream, stale_actual
      FROM (SELECT 1) AS one
      LEFT JOIN LATERAL (
           SELECT c.stream_id, c.actual
             FROM (SELECT b.stream_id, min(b.version) AS first_version,
                          (SELECT max(x.version) FROM events x
                            WHERE x.stream_id = b.stream_id) AS actual
                     FROM unnest(p_stream_ids, p_versions) AS b(stream_id, version)
                    GROUP BY b.stream_id) c
             LEFT JOIN unnest(p_expected_streams, p_expected_versions) AS w(stream_id, version)
               ON w.stream_id = c.stream_id
            WHERE CASE WHEN w.stream_id IS NOT NULL
                       THEN c.actual IS DISTINCT FROM nullif(w.version, 0)
                       ELSE c.actual >= c.first_version END
            LIMIT 1
      ) v ON true;
    IF erased IS NOT NULL THEN
        RAISE EXCEPTION 'subject % has been erased', erased
            USING ERRCODE = 'CY410', DETAIL = erased::text;
    END IF;
    IF stale_stream IS NOT NULL THEN
        RAISE EXCEPTION 'wrong expected version for stream %', stale_stream
            USING ERRCODE = 'CY409',
                  DETAIL = stale_stream::text || ' ' || coalesce(stale_actual, 0);
    END IF;

    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT pg_current_xact_id(),
               ARRAY(SELECT nextval('events_position_seq')
                       FROM generate_series(1, cardinality(p_event_ids)))
          INTO tx, positions;
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
    RETURN positions;
END $$;
