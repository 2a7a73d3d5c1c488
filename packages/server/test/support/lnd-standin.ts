/**
 * A stand-in for LND's REST gateway: a local HTTPS server (self-signed certificate, as
 * LND's own) that answers the REST calls the `lnd` backend makes, backed by any
 * LightningBackend (in the end-to-end tests, a devnet node), so payments really happen.
 *
 * It is held to LND's published description (`../shared/reference/lnd/*.swagger.json`):
 * every request path, query parameter and body field must be one LND describes, and every
 * response (each line of a streamed one too) is checked the same way before it is sent.
 * A violation is recorded in `violations` and answered with an error, so tests fail
 * loudly; tests assert `violations` is empty. Described fields that the stand-in does not
 * emulate are refused too (recorded as "not emulated"), never silently ignored.
 *
 * Emulated LND behaviour (from LND's rpcserver.go / routerrpc, and grpc-gateway):
 * - the macaroon in `Grpc-Metadata-macaroon` (hex) is required; without it LND answers
 *   500 `expected 1 macaroon, got 0`, with a wrong one `verification failed: ...`;
 * - gRPC errors become HTTP statuses (NotFound 404, AlreadyExists 409, Unknown 500) with
 *   an `rpcStatus` body, wrapped as `{"error": ...}` on streamed calls;
 * - SubscribeInvoices replays invoices added after `add_index` and settled after
 *   `settle_index` (0 means no replay), then streams live add and settle events;
 * - SendPaymentV2 checks the request before sending (network, expiry, amount) and
 *   refuses a paid invoice with AlreadyExists `invoice is already paid`; expired
 *   invoices are CANCELED, as LND's expiry watcher leaves them.
 *
 * Faults for tests: `dropStreams()` (cut every streamed connection), `setOutage(true)`
 * (refuse every connection), `dropNextPaymentAfterDispatch()` (send the payment, then cut
 * the connection before answering), `holdNextPaymentStream()` (send the payment, then
 * say nothing until the client gives up).
 */
import { randomBytes, createHash } from 'node:crypto';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { generate } from 'selfsigned';
import { systemClock, type Clock } from '../../src/clock.js';
import type {
  InvoiceRecord,
  InvoiceWatch,
  LightningBackend,
  PaymentFailureReason,
  PaymentLookup,
  PaymentOutcome,
  SettledInvoice,
} from '../../src/lightning/backend.js';
import { decodeBolt11 } from '../../src/lightning/bolt11/index.js';
import { msat, parseMsat, type Msat } from '../../src/money/msat.js';
import { loadLndSwagger, type LndSwagger, type MatchedOperation } from './swagger.js';

export interface LndStandinOptions {
  backend: LightningBackend;
  /** The macaroon the stand-in accepts, hex. Default: random bytes. */
  macaroonHex?: string;
  /** Used for invoice expiry checks before sending (share the devnet's manual clock). */
  clock?: Clock;
  /** A certificate to serve instead of a fresh one (PEM). */
  tls?: { certPem: string; keyPem: string };
  swagger?: LndSwagger;
}

export interface LndStandin {
  readonly url: string;
  readonly certPem: string;
  readonly macaroonHex: string;
  /** Everything LND's description (or the emulation) did not allow. Tests expect it empty. */
  readonly violations: string[];
  /** Each request received: method, path and LND operation id. */
  readonly requests: ReadonlyArray<{ method: string; path: string; operationId: string | null }>;
  /** Cuts every open streamed connection (invoice subscriptions, payment streams). */
  dropStreams(): void;
  /** How many invoice subscriptions are open now. */
  openSubscriptionCount(): number;
  /** While on, every connection is cut as soon as it opens, and open ones are cut now. */
  setOutage(on: boolean): void;
  /** The next SendPaymentV2 is handed to the backend, then its connection is cut unanswered. */
  dropNextPaymentAfterDispatch(): void;
  /** The next SendPaymentV2 is handed to the backend and its stream stays silent until the client leaves. */
  holdNextPaymentStream(): void;
  /**
   * The next SubscribeInvoices is registered only when the returned function is called, as
   * when LND is slow to register a subscriber: settlements before that reach it no more than
   * they would reach a subscriber of LND's that is not registered yet.
   */
  holdNextSubscription(): () => void;
  close(): Promise<void>;
}

export interface SelfSignedTls {
  certPem: string;
  keyPem: string;
}

/**
 * A certificate like LND's tls.cert: self-signed ECDSA P-256, a CA, for localhost and
 * 127.0.0.1 unless other names are given. With `signer`, issued by that certificate instead.
 */
export async function generateSelfSignedTls(
  options: { commonName?: string; signer?: SelfSignedTls; dnsNames?: string[]; ipAddresses?: string[] } = {},
): Promise<SelfSignedTls> {
  const signer = options.signer;
  const altNames = [
    ...(options.dnsNames ?? ['localhost']).map((value) => ({ type: 2 as const, value })),
    ...(options.ipAddresses ?? ['127.0.0.1']).map((ip) => ({ type: 7 as const, ip })),
  ];
  const pems = await generate([{ name: 'commonName', value: options.commonName ?? 'sluice lnd stand-in' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    extensions: [
      { name: 'basicConstraints', cA: signer === undefined },
      { name: 'keyUsage', digitalSignature: true, keyCertSign: signer === undefined, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
    ...(signer === undefined ? {} : { ca: { key: signer.keyPem, cert: signer.certPem } }),
  });
  return { certPem: pems.cert, keyPem: pems.private };
}

const KEYSEND_RECORD_TYPE = '5482373484';
const MAX_REQUEST_BYTES = 1024 * 1024;

/** grpc-gateway's HTTPStatusFromCode for the codes the stand-in uses. */
const HTTP_STATUS_BY_GRPC_CODE: Record<number, number> = { 2: 500, 3: 400, 5: 404, 6: 409, 12: 501, 13: 500 };

class GrpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

interface KnownInvoice {
  addIndex: bigint;
  paymentHash: string;
}

interface Subscriber {
  /** Live events that arrived while the replay was being written; null once replayed. */
  buffered: Array<{ kind: 'add' | 'settle'; record: InvoiceRecord }> | null;
  lastAddIndex: bigint;
  lastSettleIndex: bigint;
  write(record: InvoiceRecord): void;
}

export async function startLndStandin(options: LndStandinOptions): Promise<LndStandin> {
  const backend = options.backend;
  const clock = options.clock ?? systemClock;
  const swagger = options.swagger ?? loadLndSwagger();
  const macaroonHex = options.macaroonHex ?? randomBytes(32).toString('hex');
  const tls = options.tls ?? (await generateSelfSignedTls());
  const network = (await backend.getInfo()).network;

  const violations: string[] = [];
  const requests: Array<{ method: string; path: string; operationId: string | null }> = [];
  const sockets = new Set<Socket>();
  const streamSockets = new Set<Socket>();
  const dispatched: Promise<unknown>[] = [];
  let outage = false;
  let dropNextPayment = false;
  let holdNextPayment = false;
  let nextSubscriptionHold: Promise<void> | null = null;

  // The stand-in's own books, as LND keeps them: add indexes for invoices, and the
  // settlements in settle order, learnt from one watch over the backend.
  const invoicesByHash = new Map<string, KnownInvoice>();
  const invoicesByAddIndex: KnownInvoice[] = [];
  const settled: SettledInvoice[] = [];
  const subscribers = new Set<Subscriber>();

  function know(paymentHash: string): KnownInvoice {
    const existing = invoicesByHash.get(paymentHash);
    if (existing !== undefined) return existing;
    const known = { addIndex: BigInt(invoicesByAddIndex.length + 1), paymentHash };
    invoicesByHash.set(paymentHash, known);
    invoicesByAddIndex.push(known);
    return known;
  }

  function publish(kind: 'add' | 'settle', record: InvoiceRecord): void {
    for (const subscriber of subscribers) {
      if (subscriber.buffered !== null) subscriber.buffered.push({ kind, record });
      else deliverLive(subscriber, kind, record);
    }
  }

  function deliverLive(subscriber: Subscriber, kind: 'add' | 'settle', record: InvoiceRecord): void {
    // As LND's registry: an event at or below what the client already got is dropped.
    if (kind === 'add') {
      const addIndex = know(record.paymentHash).addIndex;
      if (addIndex <= subscriber.lastAddIndex) return;
      subscriber.lastAddIndex = addIndex;
    } else {
      const settleIndex = BigInt(record.settleIndex ?? '0');
      if (settleIndex <= subscriber.lastSettleIndex) return;
      subscriber.lastSettleIndex = settleIndex;
    }
    subscriber.write(record);
  }

  const settlementWatch: InvoiceWatch = backend.watchInvoices({
    afterSettleIndex: '0',
    onSettled: async (invoice) => {
      know(invoice.paymentHash);
      settled.push(invoice);
      publish('settle', invoice);
    },
  });

  function lndInvoice(record: InvoiceRecord): Record<string, unknown> {
    return lndInvoiceFromInvoiceRecord(record, know(record.paymentHash).addIndex);
  }

  // ---- handlers, by LND operation id ----

  type Unary = (context: RequestContext) => Promise<unknown>;
  type Streamed = (context: RequestContext, stream: StreamWriter) => Promise<void>;

  const unaryHandlers: Record<string, Unary> = {
    Lightning_GetInfo: async () => {
      const info = await backend.getInfo();
      return {
        version: '0.18.5-beta sluice-standin',
        commit_hash: '',
        identity_pubkey: info.pubkey,
        alias: info.alias,
        color: '#3399ff',
        num_pending_channels: 0,
        num_active_channels: 1,
        num_inactive_channels: 0,
        num_peers: 1,
        block_height: info.blockHeight,
        block_hash: '',
        best_header_timestamp: String(Math.floor(clock.now() / 1000)),
        synced_to_chain: info.syncedToChain,
        synced_to_graph: true,
        testnet: info.network === 'testnet',
        chains: [{ chain: 'bitcoin', network: info.network }],
        uris: [],
        features: {},
        require_htlc_interceptor: false,
        store_final_htlc_resolutions: false,
      };
    },

    Lightning_AddInvoice: async ({ body }) => {
      const fields = expectFields(body, ['memo', 'value', 'value_msat', 'description_hash', 'expiry', 'r_preimage']);
      const valueSat = digits(fields['value'], '0');
      const valueMsat = digits(fields['value_msat'], '0');
      if (valueSat !== '0' && valueMsat !== '0') throw new GrpcError(2, 'value and value_msat are mutually exclusive');
      const amountMsat = valueMsat !== '0' ? money(valueMsat) : msat(BigInt(valueSat) * 1000n);
      const memo = typeof fields['memo'] === 'string' ? fields['memo'] : '';
      const descriptionHash = bytesHex(fields['description_hash']);
      const preimage = bytesHex(fields['r_preimage']);
      if (descriptionHash !== '' && descriptionHash.length !== 64) throw new GrpcError(2, 'description hash is 32 bytes');
      if (preimage !== '' && preimage.length !== 64) throw new GrpcError(2, 'preimage must be 32 bytes');
      if (descriptionHash !== '' && memo !== '') throw new GrpcError(12, 'stand-in: memo together with description_hash is not emulated');
      const expiryS = Number(digits(fields['expiry'], '0')) || 86_400;
      if (preimage !== '' && (await backend.lookupInvoice(sha256Hex(preimage))) !== null) {
        throw new GrpcError(6, 'invoice with payment hash already exists');
      }
      const created = await backend.createInvoice({
        amountMsat,
        expiryS,
        ...(descriptionHash !== '' ? { descriptionHash } : { description: memo }),
        ...(preimage !== '' ? { preimage } : {}),
      });
      const known = know(created.paymentHash);
      const decoded = decodeBolt11(created.paymentRequest);
      const record = await backend.lookupInvoice(created.paymentHash);
      if (record !== null) publish('add', record);
      return {
        r_hash: base64(created.paymentHash),
        payment_request: created.paymentRequest,
        add_index: known.addIndex.toString(),
        payment_addr: decoded.ok ? base64(decoded.invoice.paymentSecret) : '',
      };
    },

    Lightning_LookupInvoice: async ({ match, url }) => {
      if (url.searchParams.has('r_hash')) throw new GrpcError(12, 'stand-in: look-up by r_hash query is not emulated');
      const hash = match.pathParams['r_hash_str'] ?? '';
      if (!/^[0-9a-f]{64}$/.test(hash)) throw new GrpcError(2, 'invalid hash: must be exactly 32 bytes');
      const record = await backend.lookupInvoice(hash);
      if (record === null) throw new GrpcError(5, 'unable to locate invoice');
      return lndInvoice(record);
    },

    Lightning_ListInvoices: async ({ url }) => {
      for (const name of ['reversed', 'creation_date_start', 'creation_date_end']) {
        if (url.searchParams.has(name) && url.searchParams.get(name) !== 'false' && url.searchParams.get(name) !== '0') {
          throw new GrpcError(12, `stand-in: ListInvoices ${name} is not emulated`);
        }
      }
      const pendingOnly = url.searchParams.get('pending_only') === 'true';
      const offset = BigInt(url.searchParams.get('index_offset') ?? '0');
      const max = Number(url.searchParams.get('num_max_invoices') ?? '100') || 100;
      const invoices: Record<string, unknown>[] = [];
      for (const known of invoicesByAddIndex) {
        if (invoices.length >= max) break;
        if (known.addIndex <= offset) continue;
        const record = await backend.lookupInvoice(known.paymentHash);
        if (record === null) continue;
        if (pendingOnly && record.state !== 'open') continue;
        invoices.push(lndInvoice(record));
      }
      const first = invoices[0]?.['add_index'] ?? '0';
      const last = invoices[invoices.length - 1]?.['add_index'] ?? '0';
      return { invoices, first_index_offset: first, last_index_offset: last };
    },
  };

  const streamedHandlers: Record<string, Streamed> = {
    Lightning_SubscribeInvoices: async ({ url }, stream) => {
      const hold = nextSubscriptionHold;
      nextSubscriptionHold = null;
      if (hold) await hold;
      const addIndex = BigInt(url.searchParams.get('add_index') ?? '0');
      const settleIndex = BigInt(url.searchParams.get('settle_index') ?? '0');
      const subscriber: Subscriber = {
        buffered: [],
        lastAddIndex: addIndex,
        lastSettleIndex: settleIndex,
        write: (record) => stream.write({ result: lndInvoice(record) }),
      };
      subscribers.add(subscriber);
      stream.onClose(() => subscribers.delete(subscriber));
      if (addIndex > 0n) {
        for (const known of [...invoicesByAddIndex]) {
          if (known.addIndex <= addIndex) continue;
          const record = await backend.lookupInvoice(known.paymentHash);
          if (record !== null) subscriber.write(record);
          subscriber.lastAddIndex = known.addIndex;
        }
      }
      if (settleIndex > 0n) {
        for (const invoice of [...settled]) {
          if (BigInt(invoice.settleIndex) <= subscriber.lastSettleIndex) continue;
          subscriber.write(invoice);
          subscriber.lastSettleIndex = BigInt(invoice.settleIndex);
        }
      }
      const buffered = subscriber.buffered ?? [];
      subscriber.buffered = null;
      for (const event of buffered) deliverLive(subscriber, event.kind, event.record);
      // The stream stays open until the client leaves, the stand-in drops it or closes.
      await stream.closed;
    },

    Router_SendPaymentV2: async ({ body, socket }, stream) => {
      const fields = expectFields(body, [
        'payment_request',
        'amt_msat',
        'amt',
        'fee_limit_msat',
        'fee_limit_sat',
        'timeout_seconds',
        'no_inflight_updates',
        'dest',
        'payment_hash',
        'dest_custom_records',
      ]);
      const plan = await planPayment(fields);
      if (dropNextPayment) {
        dropNextPayment = false;
        dispatched.push(plan.send().catch(() => undefined));
        socket.destroy();
        return;
      }
      if (holdNextPayment) {
        holdNextPayment = false;
        dispatched.push(plan.send().catch(() => undefined));
        await stream.closed;
        return;
      }
      const noInflight = fields['no_inflight_updates'] === true;
      if (!noInflight) stream.write({ result: lndPayment(plan.paymentHash, { status: 'unknown', paymentHash: plan.paymentHash, detail: '' }, plan) });
      const outcome = await plan.send();
      if (outcome.status === 'failed' && outcome.reason === 'already_paid') throw new GrpcError(6, 'invoice is already paid');
      if (outcome.status === 'failed' && outcome.reason === 'invoice_expired' && plan.expiresAtS !== null) {
        throw new GrpcError(2, `invoice expired. Valid until ${new Date(plan.expiresAtS * 1000).toISOString()}`);
      }
      // An unknown outcome leaves the payment in flight: the stand-in knows no more.
      if (outcome.status === 'unknown' && noInflight) stream.write({ result: lndPayment(plan.paymentHash, outcome, plan) });
      if (outcome.status !== 'unknown') stream.write({ result: lndPayment(plan.paymentHash, outcome, plan) });
      stream.end();
    },

    Router_TrackPaymentV2: async ({ match, url }, stream) => {
      const hash = hexFromPathBytes(match.pathParams['payment_hash'] ?? '');
      if (hash === null || hash.length !== 64) throw new GrpcError(3, 'invalid payment hash');
      const outcome = await backend.lookupPayment(hash);
      if (outcome.status === 'not_found') throw new GrpcError(5, "payment isn't initiated");
      if (outcome.status === 'unknown' && url.searchParams.get('no_inflight_updates') === 'true') {
        throw new GrpcError(12, 'stand-in: waiting for a final update of an in-flight payment is not emulated');
      }
      stream.write({ result: lndPayment(hash, outcome, null) });
      stream.end();
    },
  };

  interface PaymentPlan {
    paymentHash: string;
    amountMsat: Msat;
    paymentRequest: string;
    expiresAtS: number | null;
    send(): Promise<PaymentOutcome>;
  }

  /** LND's checks before it records a payment (routerrpc extractIntentFromSendRequest). */
  async function planPayment(fields: Record<string, unknown>): Promise<PaymentPlan> {
    const timeoutS = Number(fields['timeout_seconds'] ?? 0);
    if (!Number.isInteger(timeoutS) || timeoutS <= 0) throw new GrpcError(2, 'timeout_seconds must be specified');
    const feeSat = digits(fields['fee_limit_sat'], '0');
    const feeMsat = digits(fields['fee_limit_msat'], '0');
    if (feeSat !== '0' && feeMsat !== '0') throw new GrpcError(2, 'sat and msat arguments are mutually exclusive');
    const feeLimitMsat = feeMsat !== '0' ? money(feeMsat) : msat(BigInt(feeSat) * 1000n);
    const amtSat = digits(fields['amt'], '0');
    const amtMsat = digits(fields['amt_msat'], '0');
    if (amtSat !== '0' && amtMsat !== '0') throw new GrpcError(2, 'sat and msat arguments are mutually exclusive');
    const requestedMsat = amtMsat !== '0' ? money(amtMsat) : msat(BigInt(amtSat) * 1000n);

    const paymentRequest = typeof fields['payment_request'] === 'string' ? fields['payment_request'] : '';
    if (paymentRequest !== '') {
      if (fields['dest'] !== undefined || fields['payment_hash'] !== undefined || fields['dest_custom_records'] !== undefined) {
        throw new GrpcError(12, 'stand-in: payment_request together with dest/payment_hash/custom records is not emulated');
      }
      const decoded = decodeBolt11(paymentRequest);
      if (!decoded.ok) throw new GrpcError(2, `invalid payment request: ${decoded.detail}`);
      const invoice = decoded.invoice;
      if (invoice.network !== network) throw new GrpcError(2, `invoice not for current active network '${network}'`);
      if (clock.now() >= invoice.expiresAt * 1000) {
        throw new GrpcError(2, `invoice expired. Valid until ${new Date(invoice.expiresAt * 1000).toISOString()}`);
      }
      if (invoice.amountMsat !== null && requestedMsat !== 0n) {
        throw new GrpcError(2, 'amount must not be specified when paying a non-zero amount invoice');
      }
      if (invoice.amountMsat === null && requestedMsat === 0n) throw new GrpcError(2, 'amount must be specified when paying a zero amount invoice');
      const amountMsat = invoice.amountMsat ?? requestedMsat;
      return {
        paymentHash: invoice.paymentHash,
        amountMsat,
        paymentRequest,
        expiresAtS: invoice.expiresAt,
        send: () =>
          backend.payInvoice({
            paymentRequest,
            feeLimitMsat,
            timeoutS,
            ...(invoice.amountMsat === null ? { amountMsat } : {}),
          }),
      };
    }

    const dest = bytesHex(fields['dest']);
    if (dest.length !== 66) throw new GrpcError(2, 'invalid vertex length');
    const paymentHash = bytesHex(fields['payment_hash']);
    if (paymentHash.length !== 64) throw new GrpcError(2, 'payment hash must be 32 bytes');
    const records = fields['dest_custom_records'];
    const preimage = typeof records === 'object' && records !== null ? bytesHex((records as Record<string, unknown>)[KEYSEND_RECORD_TYPE]) : '';
    if (typeof records === 'object' && records !== null && Object.keys(records).some((key) => key !== KEYSEND_RECORD_TYPE)) {
      throw new GrpcError(12, 'stand-in: custom records other than keysend are not emulated');
    }
    if (preimage.length !== 64 || sha256Hex(preimage) !== paymentHash) {
      throw new GrpcError(12, 'stand-in: a payment to dest without a matching keysend preimage is not emulated');
    }
    if (requestedMsat === 0n) throw new GrpcError(2, 'amount must be greater than 0');
    return {
      paymentHash,
      amountMsat: requestedMsat,
      paymentRequest: '',
      expiresAtS: null,
      send: () => backend.keysend({ destinationPubkey: dest, amountMsat: requestedMsat, feeLimitMsat, timeoutS, preimage }),
    };
  }

  function lndPayment(paymentHash: string, outcome: PaymentLookup, plan: { amountMsat: Msat; paymentRequest: string } | null): Record<string, unknown> {
    const amountMsat = outcome.status === 'succeeded' ? outcome.amountMsat : (plan?.amountMsat ?? 0n);
    const feeMsat = outcome.status === 'succeeded' ? outcome.feeMsat : 0n;
    const status = outcome.status === 'succeeded' ? 'SUCCEEDED' : outcome.status === 'failed' ? 'FAILED' : 'IN_FLIGHT';
    const nowS = Math.floor(clock.now() / 1000);
    return {
      payment_hash: paymentHash,
      value: String(amountMsat / 1000n),
      creation_date: String(nowS),
      fee: String(feeMsat / 1000n),
      payment_preimage: outcome.status === 'succeeded' ? outcome.preimage : '',
      value_sat: String(amountMsat / 1000n),
      value_msat: amountMsat.toString(),
      payment_request: plan?.paymentRequest ?? '',
      status,
      fee_sat: String(feeMsat / 1000n),
      fee_msat: feeMsat.toString(),
      creation_time_ns: String(BigInt(nowS) * 1_000_000_000n),
      htlcs: [],
      payment_index: '0',
      failure_reason: outcome.status === 'failed' ? lndFailureReasonFromReason(outcome.reason) : 'FAILURE_REASON_NONE',
    };
  }

  // ---- HTTP plumbing ----

  interface RequestContext {
    match: MatchedOperation;
    url: URL;
    body: unknown;
    socket: Socket;
  }

  interface StreamWriter {
    start(): void;
    write(line: unknown): void;
    end(): void;
    onClose(listener: () => void): void;
    closed: Promise<void>;
  }

  function violation(text: string): void {
    violations.push(text);
  }

  function sendJson(response: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    response.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    response.end(text);
  }

  function grpcErrorBody(error: GrpcError): { code: number; message: string; details: unknown[] } {
    return { code: error.code, message: error.message, details: [] };
  }

  /** Sends a response after checking it against LND's description. */
  function reply(response: ServerResponse, match: MatchedOperation, status: number, body: unknown): void {
    const problems = swagger.checkResponse(match, status, body);
    if (problems.length > 0) {
      for (const problem of problems) violation(`stand-in response: ${problem}`);
      sendJson(response, 500, { code: 13, message: `stand-in produced an undescribed response: ${problems[0]}`, details: [] });
      return;
    }
    sendJson(response, status, body);
  }

  function openStream(request: IncomingMessage, response: ServerResponse, match: MatchedOperation): StreamWriter {
    let started = false;
    const socket = request.socket;
    streamSockets.add(socket);
    let resolveClosed!: () => void;
    const closed = new Promise<void>((resolve) => (resolveClosed = resolve));
    response.on('close', () => {
      streamSockets.delete(socket);
      resolveClosed();
    });
    const start = (): void => {
      if (started) return;
      started = true;
      response.writeHead(200, { 'content-type': 'application/json', 'transfer-encoding': 'chunked' });
      response.flushHeaders();
    };
    return {
      start,
      write(line) {
        if (response.writableEnded || response.destroyed) return;
        const problems = swagger.checkResponse(match, 200, line);
        if (problems.length > 0) {
          for (const problem of problems) violation(`stand-in streamed response: ${problem}`);
          response.destroy();
          return;
        }
        start();
        response.write(JSON.stringify(line) + '\n');
      },
      end() {
        if (!response.writableEnded) {
          start();
          response.end();
        }
      },
      onClose(listener) {
        response.on('close', listener);
      },
      closed,
    };
  }

  function failStream(response: ServerResponse, match: MatchedOperation, error: GrpcError): void {
    if (response.writableEnded || response.destroyed) return;
    const body = { error: grpcErrorBody(error) };
    const problems = swagger.checkResponse(match, 200, body);
    for (const problem of problems) violation(`stand-in streamed error: ${problem}`);
    if (!response.headersSent) {
      const text = JSON.stringify(body) + '\n';
      response.writeHead(HTTP_STATUS_BY_GRPC_CODE[error.code] ?? 500, { 'content-type': 'application/json' });
      response.end(text);
      return;
    }
    response.end(JSON.stringify(body) + '\n');
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    if (outage) {
      request.socket.destroy();
      return;
    }
    const url = new URL(request.url ?? '/', 'https://standin.invalid');
    const method = request.method ?? 'GET';
    const match = swagger.findOperation(method, url.pathname);
    requests.push({ method, path: url.pathname, operationId: match?.operation.operationId ?? null });

    const text = await readRequestBody(request);
    if (text === null) {
      violation(`${method} ${url.pathname}: request body over ${MAX_REQUEST_BYTES} bytes`);
      sendJson(response, 413, { code: 8, message: 'request too large', details: [] });
      return;
    }
    let body: unknown;
    if (text.length > 0) {
      try {
        body = JSON.parse(text);
      } catch {
        violation(`${method} ${url.pathname}: body is not JSON`);
        sendJson(response, 400, { code: 3, message: 'body is not JSON', details: [] });
        return;
      }
    }
    const problems = swagger.checkRequest(method, url, body);
    if (match === null || problems.length > 0) {
      for (const problem of problems) violation(`client request: ${problem}`);
      sendJson(response, match === null ? 404 : 400, { code: match === null ? 5 : 3, message: problems.join('; '), details: [] });
      return;
    }

    const macaroon = request.headers['grpc-metadata-macaroon'];
    const refusal =
      macaroon === undefined
        ? new GrpcError(2, 'expected 1 macaroon, got 0')
        : macaroon !== macaroonHex
          ? new GrpcError(2, 'verification failed: signature mismatch after caveat verification')
          : null;

    const operationId = match.operation.operationId;
    const streamed = streamedHandlers[operationId];
    const unary = unaryHandlers[operationId];
    if (streamed === undefined && unary === undefined) {
      violation(`stand-in: ${operationId} (${method} ${match.template}) is described by LND but not emulated`);
      reply(response, match, 501, { code: 12, message: `stand-in does not emulate ${operationId}`, details: [] });
      return;
    }
    const context: RequestContext = { match, url, body, socket: request.socket };
    if (streamed !== undefined) {
      if (refusal !== null) return failStream(response, match, refusal);
      const stream = openStream(request, response, match);
      try {
        await streamed(context, stream);
      } catch (error) {
        failStream(response, match, asGrpcError(error, violation));
      }
      return;
    }
    if (refusal !== null) return reply(response, match, 500, grpcErrorBody(refusal));
    try {
      const result = await (unary as Unary)(context);
      reply(response, match, 200, result);
    } catch (error) {
      const grpcError = asGrpcError(error, violation);
      reply(response, match, HTTP_STATUS_BY_GRPC_CODE[grpcError.code] ?? 500, grpcErrorBody(grpcError));
    }
  }

  const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (request, response) => {
    handle(request, response).catch((error: unknown) => {
      violation(`stand-in crashed on ${request.method} ${request.url}: ${error instanceof Error ? error.stack : String(error)}`);
      if (!response.headersSent) sendJson(response, 500, { code: 13, message: 'stand-in error', details: [] });
      else response.destroy();
    });
  });
  server.on('connection', (socket: Socket) => {
    if (outage) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // The client's own TLS refusals (pinning tests) are expected here, not failures.
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    url: `https://127.0.0.1:${port}`,
    certPem: tls.certPem,
    macaroonHex,
    violations,
    requests,
    dropStreams() {
      for (const socket of streamSockets) socket.destroy();
      streamSockets.clear();
    },
    openSubscriptionCount: () => subscribers.size,
    setOutage(on) {
      outage = on;
      if (on) for (const socket of sockets) socket.destroy();
    },
    dropNextPaymentAfterDispatch() {
      dropNextPayment = true;
    },
    holdNextPaymentStream() {
      holdNextPayment = true;
    },
    holdNextSubscription() {
      let release = (): void => {};
      nextSubscriptionHold = new Promise<void>((resolve) => {
        release = resolve;
      });
      return release;
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.allSettled(dispatched);
      await settlementWatch.stop();
    },
  };
}

// ---- LND JSON from Sluice records (the stand-in's direction) ----

export function lndInvoiceFromInvoiceRecord(record: InvoiceRecord, addIndex: bigint): Record<string, unknown> {
  const decoded = record.paymentRequest === '' ? null : decodeBolt11(record.paymentRequest);
  const invoice = decoded !== null && decoded.ok ? decoded.invoice : null;
  const paidMsat = record.amountPaidMsat ?? 0n;
  return {
    memo: invoice?.description ?? '',
    r_preimage: record.preimage === null ? '' : base64(record.preimage),
    r_hash: base64(record.paymentHash),
    value: String(record.amountMsat / 1000n),
    value_msat: record.amountMsat.toString(),
    settled: record.state === 'settled',
    creation_date: String(Math.floor(record.createdAt / 1000)),
    settle_date: record.settledAt === null ? '0' : String(Math.floor(record.settledAt / 1000)),
    payment_request: record.paymentRequest,
    description_hash: invoice?.descriptionHash === null || invoice === null ? '' : base64(invoice.descriptionHash),
    expiry: String(Math.round((record.expiresAt - record.createdAt) / 1000)),
    fallback_addr: '',
    cltv_expiry: String(invoice?.minFinalCltvExpiry ?? 0),
    route_hints: [],
    private: false,
    add_index: addIndex.toString(),
    settle_index: record.settleIndex ?? '0',
    amt_paid: String(paidMsat / 1000n),
    amt_paid_sat: String(paidMsat / 1000n),
    amt_paid_msat: paidMsat.toString(),
    state: lndInvoiceStateFromInvoiceState(record.state),
    htlcs: [],
    features: {},
    is_keysend: record.paymentRequest === '',
    payment_addr: invoice === null ? '' : base64(invoice.paymentSecret),
    is_amp: false,
  };
}

function lndInvoiceStateFromInvoiceState(state: InvoiceRecord['state']): string {
  switch (state) {
    case 'open':
      return 'OPEN';
    case 'settled':
      return 'SETTLED';
    // LND's expiry watcher cancels an invoice when it expires.
    case 'canceled':
    case 'expired':
      return 'CANCELED';
  }
}

export function lndFailureReasonFromReason(reason: PaymentFailureReason): string {
  switch (reason) {
    case 'no_route':
      return 'FAILURE_REASON_NO_ROUTE';
    case 'insufficient_balance':
      return 'FAILURE_REASON_INSUFFICIENT_BALANCE';
    case 'timeout':
      return 'FAILURE_REASON_TIMEOUT';
    case 'incorrect_payment_details':
    // At the payee an expired invoice is "incorrect or unknown payment details".
    case 'invoice_expired':
      return 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS';
    case 'already_paid':
    case 'error':
      return 'FAILURE_REASON_ERROR';
  }
}

// ---- small helpers ----

function asGrpcError(error: unknown, violation: (text: string) => void): GrpcError {
  if (error instanceof GrpcError) {
    if (error.code === 12) violation(error.message);
    return error;
  }
  // The backend refused (e.g. a RangeError for a bad amount): LND would say Unknown.
  return new GrpcError(2, error instanceof Error ? error.message : String(error));
}

/** The fields a handler emulates; any other described field is refused, not ignored. */
function expectFields(body: unknown, emulated: string[]): Record<string, unknown> {
  const fields = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!emulated.includes(key)) throw new GrpcError(12, `stand-in: request field ${key} is not emulated`);
  }
  return fields;
}

function digits(value: unknown, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value === 'string' && /^[0-9]+$/.test(value)) return BigInt(value).toString();
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return String(value);
  throw new GrpcError(3, `not an unsigned integer: ${JSON.stringify(value)}`);
}

function money(text: string): Msat {
  const parsed = parseMsat(text);
  if (!parsed.ok) throw new GrpcError(3, `not an amount: ${text}`);
  return parsed.value;
}

function bytesHex(value: unknown): string {
  if (value === undefined || value === '') return '';
  if (typeof value !== 'string') throw new GrpcError(3, 'bytes field is not a string');
  return Buffer.from(value, value.includes('-') || value.includes('_') ? 'base64url' : 'base64').toString('hex');
}

/** Path bytes as grpc-gateway reads them: Go's padded StdEncoding, else padded URLEncoding. */
function hexFromPathBytes(text: string): string | null {
  if (/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/.test(text)) return Buffer.from(text, 'base64').toString('hex');
  if (/^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$/.test(text)) return Buffer.from(text, 'base64url').toString('hex');
  return null;
}

function base64(hex: string): string {
  return Buffer.from(hex, 'hex').toString('base64');
}

function sha256Hex(hex: string): string {
  return createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
}

function readRequestBody(request: IncomingMessage): Promise<string | null> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_REQUEST_BYTES) chunks.push(chunk);
    });
    request.on('end', () => resolve(size > MAX_REQUEST_BYTES ? null : Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

