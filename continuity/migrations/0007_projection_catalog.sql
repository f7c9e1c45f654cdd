-- The projection catalog: every projection this database holds rows for, with the version of
-- the fold that built them and the tables it owns. Erasure reads it to clear every projection's
-- rows, including those of a projection this process does not run.
CREATE TABLE projections (
    name            text        PRIMARY KEY,
    mode            text        NOT NULL CHECK (mode IN ('inline', 'async')),
    version         integer     NOT NULL CHECK (version > 0),
    tables          text[]      NOT NULL,
    subject_columns text[]      NOT NULL,
    built_at        timestamptz,
    built_to        bigint,
    CHECK (cardinality(tables) = cardinality(subject_columns))
);
-- The session view's rows so far were built by version 1 (its stream versions inside the view);
-- the first start after this migration rebuilds them.
INSERT INTO projections (name, mode, version, tables, subject_columns)
VALUES ('session', 'inline', 1, '{session_views}', '{subject_id}');
