-- A customer's identifiers (email addresses, phone numbers), by keyed hash only: HMAC-SHA256
-- under the system key `identifiers` (key_version says which version made it), so an inbound
-- email or SMS finds its customer while no address or number is stored, in clear or sealed.
CREATE TABLE identifiers (
    digest        bytea       PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('email', 'phone')),
    subject_id    uuid        NOT NULL,
    key_version   integer     NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX identifiers_subject_idx ON identifiers (subject_id);
