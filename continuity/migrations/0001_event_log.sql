-- The append-only event log: one table for every event of every stream.
CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    position     bigint      PRIMARY KEY,
    tx_id        xid8        NOT NULL,
    stream_id    uuid        NOT NULL,
    version      integer     NOT NULL CHECK (version >= 0),
    event_id     uuid        NOT NULL,
    subject_id   uuid        NOT NULL,
    topic        text        NOT NULL,
    channel      text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    key_version  integer     NOT NULL,
    digest       bytea       NOT NULL,
    payload      bytea       NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version),
    CONSTRAINT events_event_id_key UNIQUE (event_id)
);
CREATE INDEX events_subject_idx ON events (subject_id);
CREATE INDEX events_topic_position_idx ON events (topic, position);

-- Append-only, enforced by the database itself.
CREATE FUNCTION events_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % is not allowed on %', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_refuse_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_refuse_change();
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;

-- Append a batch atomically. Positions are allocated inside a short critical section (a session
-- advisory lock held for the INSERT only, released before COMMIT) in which the transaction's id is
-- also assigned. So position order equals transaction-id order for appending transactions, and a
-- reader that only takes rows whose tx_id is below pg_snapshot_xmin(pg_current_snapshot()) can
-- never skip an event that commits late. Commits themselves are never serialised.
CREATE FUNCTION append_events(
    p_stream_ids        uuid[],
    p_versions          integer[],
    p_event_ids         uuid[],
    p_subject_ids       uuid[],
    p_topics            text[],
    p_channels          text[],
    p_key_versions      integer[],
    p_digests           bytea[],
    p_payloads          bytea[],
    p_expected_streams  uuid[],
    p_expected_versions integer[]
) RETURNS SETOF bigint LANGUAGE plpgsql AS $$
DECLARE
    lock_key constant bigint := hashtext('continuity.append:' || current_schema());
    stale uuid;
    stream uuid;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_events must be the first write of its transaction'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- Writers to the same stream queue here, until the earlier one commits, so that none of
    -- them waits on the unique index inside the critical section below (which would stall
    -- every appender). Taken in a fixed order, so two batches cannot deadlock.
    FOR stream IN SELECT DISTINCT s FROM unnest(p_stream_ids) AS s ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(1937011301, hashtext(stream::text));  -- class "stre"
    END LOOP;
    -- The stream must be exactly at its expected version (0: no events yet). max() over the
    -- (stream_id, version) index is one lookup; an OR of EXISTS here gets hashed into a scan.
    SELECT x.s INTO stale
      FROM unnest(p_expected_streams, p_expected_versions) AS x(s, v)
     WHERE (SELECT max(e.version) FROM events e WHERE e.stream_id = x.s)
           IS DISTINCT FROM nullif(x.v, 0)
     LIMIT 1;
    IF stale IS NOT NULL THEN
        RAISE EXCEPTION 'wrong expected version for stream %', stale
            USING ERRCODE = 'CY409', DETAIL = stale::text;
    END IF;
    PERFORM pg_advisory_lock(lock_key);
    BEGIN
        PERFORM pg_current_xact_id();
        RETURN QUERY
        INSERT INTO events (position, tx_id, stream_id, version, event_id, subject_id, topic,
                            channel, key_version, digest, payload)
        SELECT nextval('events_position_seq'), pg_current_xact_id(), b.stream_id, b.version,
               b.event_id, b.subject_id, b.topic, b.channel, b.key_version, b.digest, b.payload
          FROM unnest(p_stream_ids, p_versions, p_event_ids, p_subject_ids, p_topics, p_channels,
                      p_key_versions, p_digests, p_payloads)
               AS b(stream_id, version, event_id, subject_id, topic, channel, key_version,
                    digest, payload)
        RETURNING position;
    EXCEPTION WHEN OTHERS OR query_canceled THEN
        -- OTHERS does not match a cancelled statement (statement_timeout, a client's cancel):
        -- name it too, or the session would keep the lock and block every later append.
        PERFORM pg_advisory_unlock(lock_key);
        RAISE;
    END;
    PERFORM pg_advisory_unlock(lock_key);
END $$;

-- One row per downstream consumer (projection): the last position it has processed.
CREATE TABLE tracking (
    name       text        PRIMARY KEY,
    position   bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
