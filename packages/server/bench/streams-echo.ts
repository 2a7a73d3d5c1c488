/**
 * The transport baseline of the streams benchmark: a bare `ws` server that sends every
 * text message straight back, unread (no JSON parsing, no state), with the same socket
 * settings as Sluice's endpoint (no compression, subprotocol sluice.v1). Run as its own
 * process by streams.ts; prints `port <n>` once listening.
 */
import { WebSocketServer } from 'ws';

const server = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: false,
  clientTracking: false,
  handleProtocols: (protocols) => (protocols.has('sluice.v1') ? 'sluice.v1' : false),
});
server.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data as Buffer, { binary: isBinary }));
});
server.on('listening', () => {
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
  process.stdout.write(`port ${address.port}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
