-- The shop's own table, in the same database as jobfleet's (a job commits with its order).
CREATE TABLE IF NOT EXISTS orders (id bigserial PRIMARY KEY, item text NOT NULL);
