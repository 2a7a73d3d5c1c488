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
 * memory under load. To run with other flags, start `node <flags> packages/server/dist/cli/main.js start`.
 */
export const SERVER_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];
