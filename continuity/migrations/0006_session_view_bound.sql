-- The session row's cart id was clear and outside the row's associated data, yet read back as
-- the customer's current cart. It now lives only in the sealed body.
ALTER TABLE session_views DROP COLUMN cart_id;
