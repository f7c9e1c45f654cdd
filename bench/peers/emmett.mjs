// Emmett's PostgreSQL event store under the append benchmark's load (see bench/emmett.py).
//
//   node emmett.mjs --url URL --writers 16 --batch 1 --warmup 1 --seconds 5 \
//       --data '{"sku": ...}' --metadata '{"channel": ...}'
//
// Creates Emmett's schema in the database at URL (its scripts assume they own the database:
// they look functions and tables up by name in every schema), then runs one writer per stream,
// all concurrent on this process's event loop, each appending batches of `batch` ItemAdded
// events with the expected stream version, like bench/timing.py's drive_async. Prints one JSON
// object with the fields of bench/timing.py's Measurement: seconds, appends, events, p50_ms,
// p99_ms. An append counts if it completes inside the measured window.

import { randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

import { STREAM_DOES_NOT_EXIST } from "@event-driven-io/emmett";
import { getPostgreSQLEventStore } from "@event-driven-io/emmett-postgresql";
import pg from "pg";

const { values } = parseArgs({
  options: {
    url: { type: "string" },
    writers: { type: "string", default: "1" },
    batch: { type: "string", default: "1" },
    warmup: { type: "string", default: "1" },
    seconds: { type: "string", default: "5" },
    data: { type: "string", default: "{}" },
    metadata: { type: "string", default: "{}" },
  },
});
if (!values.url) throw new Error("--url is required");
const writers = Number(values.writers);
const batch = Number(values.batch);
const warmup = Number(values.warmup) * 1000;
const seconds = Number(values.seconds);
const data = JSON.parse(values.data);
const metadata = JSON.parse(values.metadata);

const SKUS = 100; // cycled through, as bench/contenders.py's CartFeed does

const percentile = (ordered, q) =>
  ordered.length === 0 ? null : ordered[Math.max(1, Math.ceil(q * ordered.length)) - 1];

const pool = new pg.Pool({ connectionString: values.url, max: writers + 1 });
const store = getPostgreSQLEventStore(values.url, { connectionOptions: { pool } });

async function writer(begin, end) {
  const stream = `cart-${randomUUID()}`;
  let expected = STREAM_DOES_NOT_EXIST;
  const latencies = [];
  let events = 0;
  let added = 0;
  let started;
  while ((started = performance.now()) < end) {
    const appended = Array.from({ length: batch }, () => ({
      type: "ItemAdded",
      data: { ...data, sku: `SKU-${String(added++ % SKUS).padStart(4, "0")}` },
      metadata,
    }));
    const result = await store.appendToStream(stream, appended, {
      expectedStreamVersion: expected,
    });
    expected = result.nextExpectedStreamVersion;
    const done = performance.now();
    if (begin <= done && done <= end) {
      latencies.push(done - started);
      events += batch;
    }
  }
  return { latencies, events };
}

try {
  await store.schema.migrate();
  const begin = performance.now() + warmup;
  const end = begin + seconds * 1000;
  const tallies = await Promise.all(Array.from({ length: writers }, () => writer(begin, end)));
  const latencies = tallies.flatMap((t) => t.latencies).sort((a, b) => a - b);
  process.stdout.write(
    JSON.stringify({
      seconds,
      appends: latencies.length,
      events: tallies.reduce((sum, t) => sum + t.events, 0),
      p50_ms: percentile(latencies, 0.5),
      p99_ms: percentile(latencies, 0.99),
    }) + "\n",
  );
} finally {
  await pool.end();
}
