-- append_group (0008) with its erasure and duplicate checks made lookups per row. As joins,
-- their plan (generic, made once per session) followed the statistics of the moment: on a log
-- the statistics had not caught up with (a new database, a burst of writes before autovacuum's
-- next ANALYZE) each append scanned the whole log and every erased subject, a cost that grew
-- with the log. The rest is 0008's, unchanged.

CREATE OR REPLACE FUNCTION append_group(
    p_requests          integer[],
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
    p_expected_requests integer[],
    p_expected_streams  uuid[],
    p_expected_versions integer[],
    p_view_requests     integer[],
    p_view_tables       text[],
    p_view_subjects     uuid[],
    p_view_revisions    bigint[],
    p_view_key_versions integer[],
    p_view_bodies       bytea[],
    p_snap_requests     integer[],
    p_snap_streams      uuid[],
    p_snap_subjects     uuid[],
    p_snap_versions     integer[],
    p_snap_fingerprints text[],
    p_snap_key_versions integer[],
    p_snap_states       bytea[],
    OUT outcomes        text[],
    OUT positions       bigint[]
) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan AS $$
DECLARE
    lock_key constant bigint := hashtext('continuity.append:' || current_schema());
    requests integer := coalesce((SELECT max(r) FROM unnest(p_requests) AS r), 0);
    tx xid8;
    allocated bigint[];
    passing integer;
    found record;
    tbl text;
    wanted integer;
    written integer;
    inserted integer;
BEGIN
    IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
        RAISE EXCEPTION 'append_group must be the first write of its transaction'
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    outcomes := array_fill(NULL::text, ARRAY[requests]);

    PERFORM CASE l.kind
                WHEN 0 THEN pg_advisory_xact_lock_shared(1801812339, hashtext(l.id::text))
                ELSE pg_advisory_xact_lock(1937011301, hashtext(l.id::text)) END  -- "keys", "stre"
       FROM (SELECT 0 AS kind, s AS id FROM unnest(p_subject_ids) AS s
             UNION SELECT 1, s FROM unnest(p_stream_ids) AS s
             ORDER BY 1, 2) AS l;

    -- Each check in a statement of its own, so that its snapshot follows the waits above.
    -- A lookup per row (a subplan, never flattened into a join) keeps each check on its index
    -- however small the planner believes the table to be.
    FOR found IN
        SELECT DISTINCT ON (b.request) b.request, b.subject_id
          FROM unnest(p_requests, p_subject_ids) AS b(request, subject_id)
         WHERE (SELECT true FROM erased_subjects t WHERE t.subject_id = b.subject_id)
         ORDER BY b.request
    LOOP
        outcomes[found.request] := 'CY410 ' || found.subject_id;
    END LOOP;

    FOR found IN
        SELECT c.request, c.stream_id, c.actual
          FROM (SELECT b.request, b.stream_id, min(b.version) AS first_version,
                       (SELECT max(x.version) FROM events x
                         WHERE x.stream_id = b.stream_id) AS actual
                  FROM unnest(p_requests, p_stream_ids, p_versions)
                       AS b(request, stream_id, version)
                 GROUP BY b.request, b.stream_id) c
          LEFT JOIN unnest(p_expected_requests, p_expected_streams, p_expected_versions)
               AS w(request, stream_id, version)
            ON w.request = c.request AND w.stream_id = c.stream_id
         WHERE CASE WHEN w.stream_id IS NOT NULL
                    THEN c.actual IS DISTINCT FROM nullif(w.version, 0)
                    ELSE c.actual >= c.first_version END
    LOOP
        IF outcomes[found.request] IS NULL THEN
            outcomes[found.request] := 'CY409 ' || found.stream_id || ' ' || coalesce(found.actual, 0);
        END IF;
    END LOOP;

    FOR found IN
        SELECT DISTINCT b.request
          FROM unnest(p_requests, p_event_ids) AS b(request, event_id)
         WHERE (SELECT true FROM events e WHERE e.event_id = b.event_id)
    LOOP
        IF outcomes[found.request] IS NULL THEN
            outcomes[found.request] := 'duplicate';
        END IF;
    END LOOP;

    FOR tbl IN SELECT DISTINCT t FROM unnest(p_view_tables) AS t
                WHERE cardinality(p_view_tables) > 0 ORDER BY t LOOP
        -- The lock the write will need, before the read: a rebuild switching the table over
        -- (EXCLUSIVE, then ACCESS EXCLUSIVE to drop it) waits for this group, or this group
        -- for it; reading first under a weaker lock would let each wait for the other.
        EXECUTE format('LOCK TABLE %I IN ROW EXCLUSIVE MODE', tbl);
        FOR found IN EXECUTE format(
            'SELECT v.request, v.subject_id'
            '  FROM unnest($1, $2, $3, $4) AS v(request, tbl, subject_id, revision)'
            '  LEFT JOIN %I s ON s.subject_id = v.subject_id'
            ' WHERE v.tbl = $5 AND s.xmin::text::bigint IS DISTINCT FROM v.revision', tbl)
            USING p_view_requests, p_view_tables, p_view_subjects, p_view_revisions, tbl
        LOOP
            IF outcomes[found.request] IS NULL THEN
                outcomes[found.request] := 'CY412 ' || tbl || ' ' || found.subject_id;
            END IF;
        END LOOP;
    END LOOP;

    passing := (SELECT count(*) FROM unnest(p_requests) AS r WHERE outcomes[r] IS NULL);
    IF passing = 0 THEN
        positions := array_fill(NULL::bigint, ARRAY[cardinality(p_requests)]);
        RETURN;
    END IF;

    BEGIN
        PERFORM pg_advisory_xact_lock(lock_key);
        SELECT pg_current_xact_id(),
               ARRAY(SELECT nextval('events_position_seq') FROM generate_series(1, passing))
          INTO tx, allocated;
        RAISE EXCEPTION USING ERRCODE = 'CY000';  -- roll the block back: releases the lock
    EXCEPTION WHEN SQLSTATE 'CY000' THEN
        NULL;
    END;

    IF passing = cardinality(p_requests) THEN
        positions := allocated;
    ELSE
        positions := ARRAY(
            SELECT CASE WHEN outcomes[b.request] IS NULL
                        THEN allocated[count(*) FILTER (WHERE outcomes[b.request] IS NULL)
                                       OVER (ORDER BY b.i)] END
              FROM unnest(p_requests) WITH ORDINALITY AS b(request, i)
             ORDER BY b.i);
    END IF;

    INSERT INTO events (position, tx_id, stream_id, version, event_id, subject_id, topic, channel,
                        recorded_at, key_version, digest, payload)
    SELECT b.position, tx, b.stream_id, b.version, b.event_id, b.subject_id, b.topic, b.channel,
           b.recorded_at, b.key_version, b.digest, b.payload
      FROM unnest(positions, p_stream_ids, p_versions, p_event_ids, p_subject_ids, p_topics,
                  p_channels, p_recorded_at, p_key_versions, p_digests, p_payloads)
           AS b(position, stream_id, version, event_id, subject_id, topic, channel, recorded_at,
                key_version, digest, payload)
     WHERE b.position IS NOT NULL;

    FOR tbl IN SELECT DISTINCT t FROM unnest(p_view_tables) AS t
                WHERE cardinality(p_view_tables) > 0 LOOP
        wanted := (SELECT count(*) FROM unnest(p_view_requests, p_view_tables) AS v(request, t)
                    WHERE v.t = tbl AND outcomes[v.request] IS NULL);
        CONTINUE WHEN wanted = 0;
        EXECUTE format(
            'WITH v AS (SELECT v.*, (SELECT max(p.position)'
            '                          FROM unnest($7, $8) AS p(request, position)'
            '                         WHERE p.request = v.request) AS position'
            '             FROM unnest($1, $2, $3, $4, $5, $6)'
            '                  AS v(request, tbl, subject_id, revision, key_version, body)'
            '            WHERE v.tbl = $9 AND ($10::text[])[v.request] IS NULL)'
            ' UPDATE %I s SET key_version = v.key_version,'
            '        position = greatest(s.position, v.position), body = v.body,'
            '        updated_at = now()'
            '   FROM v WHERE s.subject_id = v.subject_id AND s.xmin::text::bigint = v.revision',
            tbl)
            USING p_view_requests, p_view_tables, p_view_subjects, p_view_revisions,
                  p_view_key_versions, p_view_bodies, p_requests, positions, tbl, outcomes;
        GET DIAGNOSTICS written = ROW_COUNT;
        EXECUTE format(
            'INSERT INTO %I (subject_id, key_version, position, body)'
            ' SELECT v.subject_id, v.key_version,'
            '        (SELECT max(p.position) FROM unnest($7, $8) AS p(request, position)'
            '          WHERE p.request = v.request), v.body'
            '   FROM unnest($1, $2, $3, $4, $5, $6)'
            '        AS v(request, tbl, subject_id, revision, key_version, body)'
            '  WHERE v.tbl = $9 AND v.revision IS NULL AND ($10::text[])[v.request] IS NULL'
            ' ON CONFLICT (subject_id) DO NOTHING', tbl)
            USING p_view_requests, p_view_tables, p_view_subjects, p_view_revisions,
                  p_view_key_versions, p_view_bodies, p_requests, positions, tbl, outcomes;
        GET DIAGNOSTICS inserted = ROW_COUNT;
        IF written + inserted <> wanted THEN
            RAISE EXCEPTION 'a row of % changed while the group was being written', tbl
                USING ERRCODE = 'CY412', DETAIL = tbl;
        END IF;
    END LOOP;

    IF cardinality(p_snap_streams) = 0 THEN
        RETURN;
    END IF;
    INSERT INTO snapshots AS s (stream_id, subject_id, version, fingerprint, key_version, state)
    SELECT n.stream_id, n.subject_id, n.version, n.fingerprint, n.key_version, n.state
      FROM unnest(p_snap_requests, p_snap_streams, p_snap_subjects, p_snap_versions,
                  p_snap_fingerprints, p_snap_key_versions, p_snap_states)
           AS n(request, stream_id, subject_id, version, fingerprint, key_version, state)
     WHERE outcomes[n.request] IS NULL
    ON CONFLICT (stream_id) DO UPDATE
       SET subject_id = excluded.subject_id, version = excluded.version,
           fingerprint = excluded.fingerprint, key_version = excluded.key_version,
           state = excluded.state, taken_at = now()
     WHERE s.version < excluded.version OR s.fingerprint <> excluded.fingerprint;
END $$;
