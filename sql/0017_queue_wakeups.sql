-- jobfleet schema, version 17: a statement's ready jobs of one queue wake only the nodes that
-- serve that queue.
--
-- The jobs channel carried '' for "ready now" whatever the queue: every idle node woke and
-- ran a claim, and a node serving other queues (`supervisor --queues`) found nothing, after
-- walking the pickup order past every ready job it does not serve. With the HTTP API on such
-- a node (the bench's API node serves a queue nobody enqueues to), each request's commit cost
-- the database a claim that read the whole backlog: 1 ms of its CPU per request at 11,000
-- jobs queued, more as the backlog grew. Now a statement whose ready jobs are all in one
-- queue says 'queue <name>', and a node that does not serve it lets it pass; jobs of several
-- queues still say '' (everyone looks), as do the other notifiers. A node of an earlier
-- version takes 'queue <name>' as '' (anything but 'limits' and 'at ...'), so mixed versions
-- lose no wake-up. One pass over the statement's rows, as before (the soonest scheduled job
-- was already found by a full pass); `COLLATE "C"`: only equality matters.

CREATE OR REPLACE FUNCTION jobfleet_notify_ready() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    first_queue text;
    last_queue text;
    soonest timestamptz;
BEGIN
    SELECT min(queue COLLATE "C") FILTER (WHERE run_at <= now()),
           max(queue COLLATE "C") FILTER (WHERE run_at <= now()),
           min(run_at) FILTER (WHERE run_at > now())
    INTO first_queue, last_queue, soonest
    FROM new_jobs WHERE state = 'queued';
    IF first_queue IS NOT NULL THEN
        PERFORM pg_notify('jobfleet_jobs',
                          CASE WHEN first_queue = last_queue THEN 'queue ' || first_queue
                               ELSE '' END);
    END IF;
    IF soonest IS NOT NULL THEN
        PERFORM pg_notify('jobfleet_jobs', 'at ' || extract(epoch FROM soonest));
    END IF;
    RETURN NULL;
END
$$;
