-- Identifiers of erased subjects (keyed hashes, as in `identifiers`): a message from one, or
-- registering one, is refused until a compliance officer lifts the suppression. No subject id
-- is kept: the suppression says only that this hash may not come back by itself.
CREATE TABLE suppressed_identifiers (
    digest        bytea       PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('email', 'phone')),
    key_version   integer     NOT NULL,
    suppressed_at timestamptz NOT NULL DEFAULT now(),
    lifted_at     timestamptz
);
