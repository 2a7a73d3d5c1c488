/**
 * The transport baselines of the streams benchmark, run as their own process by streams.ts
 * (prints `port <n>` once listening), with the same socket settings as Sluice's endpoint
 * (no compression, subprotocol sluice.v1):
 *
 * - `streams-echo.ts`: a bare `ws` server that sends every text message straight back,
 *   unread (no JSON parsing, no state): the transport's limit.
 * - `streams-echo.ts --durable DIR`: the same echo, but a message goes back only once it is
 *   on disk: the messages received since the last write are appended to one file in DIR and
 *   the file is synced (`fdatasync` on libuv's thread pool, one sync at a time), then all of
 *   them are sent back. This is the least any server that acknowledges only what is durable
 *   must do (Sluice's group commit does this plus its transaction), so its latency at a
 *   fixed load is the disk's share of Sluice's. The file wraps at 4 MiB and is written
 *   again from its start, as SQLite's WAL is reused after a checkpoint, so the sync does not
 *   also journal a growing file size.
 */
import fs from 'node:fs';
import path from 'node:path';
import { WebSocketServer, type RawData, type WebSocket } from 'ws';

const WRAP_BYTES = 4 * 1024 * 1024;
const durableIndex = process.argv.indexOf('--durable');
const durableDir = durableIndex >= 0 ? process.argv[durableIndex + 1] : undefined;

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: false,
  clientTracking: false,
  handleProtocols: (protocols) => (protocols.has('sluice.v1') ? 'sluice.v1' : false),
});

const echoAfterSync = durableDir === undefined ? null : createGroupSync(path.join(durableDir, 'durable-echo.log'));
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (echoAfterSync) echoAfterSync(ws, data, isBinary);
    else ws.send(data as Buffer, { binary: isBinary });
  });
});
server.on('listening', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
  process.stdout.write(`port ${address.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));

/** Group commit in its barest form: write what arrived, sync, reply to all of it. */
function createGroupSync(file: string): (ws: WebSocket, data: RawData, isBinary: boolean) => void {
  const fd = fs.openSync(file, 'w');
  let position = 0;
  let waiting: { ws: WebSocket; data: Buffer; isBinary: boolean }[] = [];
  let syncing = false;
  let scheduled = false;

  const commit = (): void => {
    scheduled = false;
    if (syncing || waiting.length === 0) return;
    const batch = waiting;
    waiting = [];
    syncing = true;
    const bytes = Buffer.concat(batch.map((message) => message.data));
    if (position + bytes.length > WRAP_BYTES) position = 0;
    fs.writeSync(fd, bytes, 0, bytes.length, position);
    position += bytes.length;
    fs.fdatasync(fd, (error) => {
      if (error) throw error;
      syncing = false;
      for (const message of batch) message.ws.send(message.data, { binary: message.isBinary });
      schedule();
    });
  };
  const schedule = (): void => {
    if (scheduled || syncing || waiting.length === 0) return;
    scheduled = true;
    setImmediate(commit);
  };
  return (ws, data, isBinary) => {
    waiting.push({ ws, data: data as Buffer, isBinary });
    schedule();
  };
}
