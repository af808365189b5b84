-- jobfleet schema, version 7: queues that can be paused.
--
-- A queue has a row here once someone paused or resumed it; a queue with no row runs. Pausing
-- announces itself on the `jobfleet_queues` channel, so every node stops claiming from the
-- queue at once (and learns of it at its next heartbeat if it missed the notification);
-- running jobs finish. The claim leaves out the queues its node knows are paused.

CREATE TABLE queues (
    name       text PRIMARY KEY,
    paused     boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now()
);
