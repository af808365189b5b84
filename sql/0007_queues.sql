-- jobfleet schema, version 7: queues that can be paused.
--
-- A queue has a row here once someone paused or resumed it; a queue with no row runs. Every
-- claim reads the paused queues here and leaves them out, so a pause holds for every node from
-- the moment it commits; running jobs finish. The table stays a few rows long.

CREATE TABLE queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now()
);
