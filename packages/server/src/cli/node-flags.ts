/**
 * The Node.js flags the Sluice server runs with: `npm start`, the `sluice` command (its
 * shebang), and the tests and benchmarks that start it as a process. A test checks that
 * package.json and bin/sluice.js carry them.
 *
 * --max-semi-space-size=64 (MiB; Node 20's default is 16): V8's young generation. A stream
 * charge allocates a few KB on its way (the frame, JSON, promises, the ack), and a scavenge
 * copies whatever is still alive, which at 1,000 streams is a few thousand charges in flight.
 * Four times fewer scavenges measured +13-19% acknowledged charges per second with 1,000
 * streams and +3-6% with 100 (docs/benchmarks.md, 2026-11-23), for up to about 100 MB more
 * memory under load.
 *
 * --initial-old-space-size=256 (MiB): the old generation's limit, where V8 starts a full
 * collection (Mark-Compact), is then never below 256 MiB. Without it, V8 sets the limit from how
 * fast the old generation grows, and under a steady stream load it grows slowly (under 1 MB/s
 * with 1,000 streams at 10,000 charges/s), so the limit came a few MB above the 30-35 MB that is
 * live: after a burst, a Mark-Compact every 1.5-3 s, each leaving 200-500 acks over 10 ms, which
 * was the p99 (ADR 0026, docs/benchmarks.md "Twelfth session"). With it, under that load, the
 * limit is minutes away. It costs memory: up to 256 MiB of garbage in the old generation
 * before it is collected, in each thread that makes that much (the main thread under load; the
 * archive's worker).
 *
 * To run with other flags, start `node <flags> packages/server/dist/cli/main.js start`.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64', '--initial-old-space-size=256'];
