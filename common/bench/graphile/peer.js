"use strict";
// jobfleet bench's Graphile Worker peer, one Node process per call (graphile-worker and pg come
// from NODE_PATH: the bench installs them with npm into its cache, outside the package).
//
//   node peer.js fill JOBS          its schema (migrations), then JOBS no-op jobs in bulk (addJobs)
//   node peer.js work CONCURRENCY   one worker process: run jobs until none is left, then exit
//   node peer.js latency SAMPLES    Graphile's own latency method; prints {"ms": [...]} on stdout
//
// The database comes as JSON in JOBFLEET_BENCH_PG: node-postgres' fields (host, port, user,
// password, database), so that a Unix socket directory works as the host.
//
// Tuning for many short jobs, as Graphile Worker's own perfTest configures it: 24 jobs at once
// per process, a pool of one connection more, a local queue of 500 jobs locked per fetch, and
// completions batched with no added delay.

const { Pool } = require("pg");
const { Logger, makeWorkerUtils, runOnce, runTaskList } = require("graphile-worker");

const LOCAL_QUEUE = { size: 500, refetchDelay: { durationMs: 10 } };
const ADD_CHUNK = 10000;
const WARM_UP = 20;

// Errors only: one line per job would be noise (and a cost no user running it quietly pays).
const logger = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});

function pool(max) {
  const created = new Pool({ ...JSON.parse(process.env.JOBFLEET_BENCH_PG), max });
  created.on("error", (e) => console.error(e)); // a dropped idle connection, not a crash
  return created;
}

async function fill(jobs) {
  const pgPool = pool(2);
  const utils = await makeWorkerUtils({ pgPool, logger });
  try {
    await utils.migrate();
    for (let done = 0; done < jobs; done += ADD_CHUNK) {
      const n = Math.min(ADD_CHUNK, jobs - done);
      await utils.addJobs(Array.from({ length: n }, () => ({ identifier: "noop", payload: {} })));
    }
  } finally {
    await utils.release();
    await pgPool.end();
  }
}

async function work(concurrency) {
  const pgPool = pool(concurrency + 1);
  try {
    await runOnce({
      pgPool,
      logger,
      noHandleSignals: true,
      taskList: { noop: async () => {} },
      preset: {
        worker: {
          concurrentJobs: concurrency,
          localQueue: LOCAL_QUEUE,
          completeJobBatchDelay: 0,
          failJobBatchDelay: 0,
        },
      },
    });
  } finally {
    await pgPool.end();
  }
}

// Graphile Worker's perfTest/latencyTest.js method, in our words: one worker (concurrency 1,
// default settings, its LISTEN/NOTIFY path) and, in the same process, one job at a time, back to
// back: a latency is from the start of the add_job call to the handler's first line; the next
// job is added once the handler has started.
async function latency(samples) {
  const pgPool = pool(4);
  const utils = await makeWorkerUtils({ pgPool, logger });
  await utils.migrate();
  await utils.release();
  let started = null;
  let onStart = null;
  const tasks = {
    latency: async () => {
      const at = process.hrtime.bigint();
      if (onStart) onStart(at);
    },
  };
  const workers = runTaskList({ concurrency: 1, logger, noHandleSignals: true }, tasks, pgPool);
  const client = await pgPool.connect();
  const ms = [];
  try {
    for (let i = 0; i < WARM_UP + samples; i++) {
      const handled = new Promise((resolve) => {
        onStart = resolve;
      });
      started = process.hrtime.bigint();
      await client.query("select graphile_worker.add_job($1, $2::json)", [
        "latency",
        JSON.stringify({ i }),
      ]);
      const at = await handled;
      if (i >= WARM_UP) ms.push(Number(at - started) / 1e6);
    }
  } finally {
    client.release();
    await workers.gracefulShutdown();
    await pgPool.end();
  }
  process.stdout.write(JSON.stringify({ ms }) + "\n");
}

const commands = { fill, work, latency };

async function main() {
  const [command, count] = process.argv.slice(2);
  const n = Number.parseInt(count, 10);
  if (!(command in commands) || !(n > 0)) {
    console.error("usage: node peer.js fill JOBS | work CONCURRENCY | latency SAMPLES");
    process.exit(2);
  }
  await commands[command](n);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
