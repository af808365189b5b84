-- jobfleet schema, version 6: the enqueuer's trace context travels with its job.
--
-- With OpenTelemetry in the enqueuing process and a span active there, the enqueue stores that
-- span's W3C trace context ({"traceparent": ..., "tracestate": ...}, checked and at most
-- about 600 bytes, see jobfleet/tracing.py) and the claim hands it to the worker, whose
-- attempt span continues the trace. NULL (no trace) costs a bit in the row's null bitmap.
-- Adding a nullable column without a default rewrites nothing: instant on a full table.

ALTER TABLE jobs ADD COLUMN trace_context jsonb;
