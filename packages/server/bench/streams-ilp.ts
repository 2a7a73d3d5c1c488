/**
 * The comparison point for streams: ilp-protocol-stream 2.7.1 (Interledger STREAM, the
 * nearest existing streaming-money protocol) sending money packets between two
 * in-process plugins.
 *
 * The plugins are a minimal in-memory connector: `sendData` hands the serialized ILP
 * packet straight to the peer's data handler and returns its serialized reply, with no
 * socket, no persistence and no settlement. It answers ILDCP (`peer.config`) itself and
 * rejects a Prepare above MAX_PACKET_UNITS with F08 (Amount Too Large, with the received
 * and maximum amounts in its data, as a connector does), so STREAM splits the total into
 * packets of MAX_PACKET_UNITS, one money packet per Sluice charge. The exchange-rate probe
 * (test packets of 1, 10^3, 10^6, ... units, with conditions nobody can fulfil) is answered
 * by F08 or by the receiver's reject: such packets are never fulfilled and never counted.
 * Counted: Prepares with a non-zero amount whose reply was an ILP Fulfill, from the moment
 * `sendTotal` is called (after the connection is set up) until every connection's
 * `sendTotal` resolved.
 *
 * ilp-protocol-stream 2.7.1 assigns `this.closed` in its stream constructor, which Node 18+
 * refuses (Readable#closed became a getter: "Cannot set property closed of #<Readable>").
 * `shimStreamClosed` gives its stream class its own `closed` property instead, at run time,
 * so nothing in node_modules is patched.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as IlpPacketModule from 'ilp-packet';
import type * as IldcpModule from 'ilp-protocol-ildcp';
import type * as StreamModule from 'ilp-protocol-stream';

const require = createRequire(import.meta.url);

/** Units per money packet (the asset's smallest unit, like msat for Sluice). */
export const MAX_PACKET_UNITS = 1000;

type DataHandler = (data: Buffer) => Promise<Buffer>;

interface MiniPlugin {
  connect(): Promise<void>;
  disconnect(): Promise<void>;
  isConnected(): boolean;
  sendData(data: Buffer): Promise<Buffer>;
  registerDataHandler(handler: DataHandler): void;
  deregisterDataHandler(): void;
}

export interface IlpCounters {
  fulfilled: number;
  rejected: number;
}

/**
 * One in-memory connector: every plugin gets an ILP address; a Prepare goes to the plugin
 * whose address prefixes its destination.
 */
function createMiniConnector(ilp: typeof IlpPacketModule, ildcp: typeof IldcpModule, counters: IlpCounters) {
  const routes = new Map<string, MiniPlugin & { handler: DataHandler | null }>();
  const amountTooLarge = (received: bigint): Buffer => {
    const data = Buffer.alloc(16);
    data.writeBigUInt64BE(received, 0);
    data.writeBigUInt64BE(BigInt(MAX_PACKET_UNITS), 8);
    return ilp.serializeIlpReject({ code: 'F08', triggeredBy: 'test.connector', message: 'amount too large', data });
  };
  const route = (destination: string): (MiniPlugin & { handler: DataHandler | null }) | undefined => {
    for (const [address, plugin] of routes) if (destination === address || destination.startsWith(address + '.')) return plugin;
    return undefined;
  };
  const plugin = (address: string): MiniPlugin => {
    let connected = false;
    const self: MiniPlugin & { handler: DataHandler | null } = {
      handler: null,
      async connect() {
        connected = true;
      },
      async disconnect() {
        connected = false;
      },
      isConnected: () => connected,
      async sendData(data) {
        const prepare = ilp.deserializeIlpPrepare(data);
        if (prepare.destination === 'peer.config') {
          return ildcp.serializeIldcpResponse({ clientAddress: address, assetScale: 3, assetCode: 'BTC' });
        }
        const amount = BigInt(prepare.amount);
        if (amount > BigInt(MAX_PACKET_UNITS)) return amountTooLarge(amount);
        const next = route(prepare.destination);
        if (!next?.handler) {
          return ilp.serializeIlpReject({ code: 'F02', triggeredBy: 'test.connector', message: 'unreachable', data: Buffer.alloc(0) });
        }
        const reply = await next.handler(data);
        if (amount > 0n) {
          if (reply[0] === ilp.Type.TYPE_ILP_FULFILL) counters.fulfilled += 1;
          else counters.rejected += 1;
        }
        return reply;
      },
      registerDataHandler(handler) {
        self.handler = handler;
      },
      deregisterDataHandler() {
        self.handler = null;
      },
    };
    routes.set(address, self);
    return self;
  };
  return { plugin };
}

let shimmed = false;
function shimStreamClosed(stream: typeof StreamModule): void {
  if (shimmed) return;
  shimmed = true;
  const closedOf = new WeakMap<object, boolean>();
  Object.defineProperty(stream.DataAndMoneyStream.prototype, 'closed', {
    configurable: true,
    get(this: object) {
      return closedOf.get(this) ?? false;
    },
    set(this: object, value: boolean) {
      closedOf.set(this, value);
    },
  });
}

export interface IlpBenchRow {
  connections: number;
  packets: number;
  seconds: number;
  packetsPerSecond: number;
  rejected: number;
}

/**
 * `connections` STREAM connections from one sender to one receiver, run at once, each
 * sending `packetsPerConnection × MAX_PACKET_UNITS` units on one stream.
 */
export async function runIlpBenchmark(options: { connections: number; packetsPerConnection: number }): Promise<IlpBenchRow> {
  const ilp = require('ilp-packet') as typeof IlpPacketModule;
  const ildcp = require('ilp-protocol-ildcp') as typeof IldcpModule;
  const stream = require('ilp-protocol-stream') as typeof StreamModule;
  shimStreamClosed(stream);
  const counters: IlpCounters = { fulfilled: 0, rejected: 0 };
  const connector = createMiniConnector(ilp, ildcp, counters);
  const server = await stream.createServer({ plugin: connector.plugin('test.receiver') as never, serverSecret: randomBytes(32) });
  server.on('connection', (connection: StreamModule.Connection) => {
    connection.on('stream', (incoming: StreamModule.DataAndMoneyStream) => incoming.setReceiveMax(Number.MAX_SAFE_INTEGER));
  });
  const senders = await Promise.all(
    Array.from({ length: options.connections }, async (_, index) => {
      const { destinationAccount, sharedSecret } = server.generateAddressAndSecret();
      const connection = await stream.createConnection({
        plugin: connector.plugin(`test.sender${index}`) as never,
        destinationAccount,
        sharedSecret,
      });
      return connection;
    }),
  );
  // Warm-up: one packet per connection finds the path's maximum packet amount (the probe).
  await Promise.all(senders.map((connection) => connection.createStream().sendTotal(MAX_PACKET_UNITS)));
  counters.fulfilled = 0;
  counters.rejected = 0;
  const total = options.packetsPerConnection * MAX_PACKET_UNITS;
  const started = process.hrtime.bigint();
  await Promise.all(senders.map((connection) => connection.createStream().sendTotal(total, { timeout: 600_000 })));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const packets = counters.fulfilled;
  if (packets < options.connections * options.packetsPerConnection) {
    throw new Error(`ILP STREAM fulfilled ${packets} packets, expected at least ${options.connections * options.packetsPerConnection}`);
  }
  await Promise.all(senders.map((connection) => connection.end().catch(() => undefined)));
  await server.close();
  return { connections: options.connections, packets, seconds, packetsPerSecond: packets / seconds, rejected: counters.rejected };
}
