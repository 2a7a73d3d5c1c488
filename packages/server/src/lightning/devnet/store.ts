/**
 * The devnet's state in SQLite: nodes and their keys, channels and balances, invoices and
 * payments. One file, `<dataDir>/devnet.sqlite`, or an in-memory database.
 *
 * Durability: WAL with synchronous=NORMAL, not the FULL that Sluice's ledger uses. In WAL
 * mode NORMAL still writes every commit to the WAL file before the commit returns; it only
 * skips the fsync, which is deferred to checkpoints. So a killed process (SIGKILL, crash)
 * loses nothing: the data is in the operating system's page cache and the next open
 * replays the WAL. Only a power cut or kernel crash can lose the last commits, and this is
 * fake money. What NORMAL buys is invoice creation without one fsync per invoice.
 *
 * Every balance change happens in one transaction together with the payment's outcome and
 * the payee's invoice, so the file never holds a payment that moved money without saying
 * so, nor the reverse.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { openSqlite, type SqliteDatabase } from '../../db/sqlite.js';
import { migrateSqlite, type ModuleMigrations } from '../../db/migrate.js';
import { msat, type Msat } from '../../money/msat.js';
import type { PaymentFailureReason } from '../backend.js';
import type { Channel, Route } from './network.js';

const MIGRATIONS: ModuleMigrations = {
  module: 'devnet',
  migrations: [
    {
      version: 1,
      name: 'devnet network, invoices and payments',
      sql: `
CREATE TABLE devnet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE devnet_nodes (
  name TEXT PRIMARY KEY,
  private_key TEXT NOT NULL CHECK (length(private_key) = 64),
  pubkey TEXT NOT NULL UNIQUE CHECK (length(pubkey) = 66)
);

CREATE TABLE devnet_channels (
  id INTEGER PRIMARY KEY,
  node_a TEXT NOT NULL REFERENCES devnet_nodes(name),
  node_b TEXT NOT NULL REFERENCES devnet_nodes(name),
  capacity_msat INTEGER NOT NULL CHECK (capacity_msat > 0),
  balance_a_msat INTEGER NOT NULL CHECK (balance_a_msat >= 0),
  balance_b_msat INTEGER NOT NULL CHECK (balance_b_msat >= 0),
  base_fee_a_msat INTEGER NOT NULL CHECK (base_fee_a_msat >= 0),
  fee_ppm_a INTEGER NOT NULL CHECK (fee_ppm_a >= 0),
  base_fee_b_msat INTEGER NOT NULL CHECK (base_fee_b_msat >= 0),
  fee_ppm_b INTEGER NOT NULL CHECK (fee_ppm_b >= 0),
  CHECK (node_a <> node_b),
  CHECK (balance_a_msat + balance_b_msat = capacity_msat)
);

CREATE TABLE devnet_invoices (
  node TEXT NOT NULL REFERENCES devnet_nodes(name),
  payment_hash TEXT NOT NULL CHECK (length(payment_hash) = 64),
  payment_request TEXT NOT NULL,
  preimage TEXT NOT NULL CHECK (length(preimage) = 64),
  payment_secret TEXT CHECK (payment_secret IS NULL OR length(payment_secret) = 64),
  amount_msat INTEGER NOT NULL CHECK (amount_msat >= 0),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  keysend INTEGER NOT NULL CHECK (keysend IN (0, 1)),
  state TEXT NOT NULL CHECK (state IN ('open', 'settled')),
  amount_paid_msat INTEGER CHECK (amount_paid_msat IS NULL OR amount_paid_msat > 0),
  settled_at INTEGER,
  settle_index INTEGER,
  PRIMARY KEY (node, payment_hash),
  UNIQUE (node, settle_index),
  CHECK ((state = 'settled') = (settle_index IS NOT NULL)),
  CHECK ((state = 'settled') = (settled_at IS NOT NULL)),
  CHECK ((state = 'settled') = (amount_paid_msat IS NOT NULL))
);

CREATE TABLE devnet_payments (
  node TEXT NOT NULL REFERENCES devnet_nodes(name),
  payment_hash TEXT NOT NULL CHECK (length(payment_hash) = 64),
  kind TEXT NOT NULL CHECK (kind IN ('invoice', 'keysend')),
  destination TEXT NOT NULL,
  amount_msat INTEGER NOT NULL CHECK (amount_msat > 0),
  fee_limit_msat INTEGER NOT NULL CHECK (fee_limit_msat >= 0),
  status TEXT NOT NULL CHECK (status IN ('in_flight', 'succeeded', 'failed')),
  fee_msat INTEGER CHECK (fee_msat IS NULL OR fee_msat >= 0),
  preimage TEXT CHECK (preimage IS NULL OR length(preimage) = 64),
  failure_reason TEXT,
  failure_detail TEXT,
  route TEXT,
  attempts INTEGER NOT NULL CHECK (attempts >= 1),
  created_at INTEGER NOT NULL,
  resolved_at INTEGER,
  PRIMARY KEY (node, payment_hash),
  CHECK ((status = 'succeeded') = (preimage IS NOT NULL AND fee_msat IS NOT NULL)),
  CHECK ((status = 'failed') = (failure_reason IS NOT NULL))
);
`,
    },
  ],
};

export interface NodeRow {
  name: string;
  privateKeyHex: string;
  pubkey: string;
}

export interface InvoiceRow {
  node: string;
  paymentHash: string;
  paymentRequest: string;
  preimage: string;
  paymentSecret: string | null;
  /** 0: any amount. */
  amountMsat: Msat;
  createdAt: number;
  expiresAt: number;
  keysend: boolean;
  state: 'open' | 'settled';
  amountPaidMsat: Msat | null;
  settledAt: number | null;
  settleIndex: bigint | null;
}

export type PaymentStatus = 'in_flight' | 'succeeded' | 'failed';

export interface PaymentRow {
  node: string;
  paymentHash: string;
  kind: 'invoice' | 'keysend';
  destination: string;
  amountMsat: Msat;
  feeLimitMsat: Msat;
  status: PaymentStatus;
  feeMsat: Msat | null;
  preimage: string | null;
  failureReason: PaymentFailureReason | null;
  failureDetail: string | null;
  attempts: number;
  createdAt: number;
  resolvedAt: number | null;
}

export interface NewInvoice {
  node: string;
  paymentHash: string;
  paymentRequest: string;
  preimage: string;
  paymentSecret: string | null;
  amountMsat: Msat;
  createdAt: number;
  expiresAt: number;
}

export interface NewPayment {
  node: string;
  paymentHash: string;
  kind: 'invoice' | 'keysend';
  destination: string;
  amountMsat: Msat;
  feeLimitMsat: Msat;
  createdAt: number;
}

export interface Settlement {
  payer: string;
  paymentHash: string;
  payee: string;
  preimage: string;
  amountMsat: Msat;
  route: Route;
  /** The channels after the route was applied (only those the route touched need be listed). */
  channels: readonly Channel[];
  /** A keysend creates the payee's invoice as it settles it. */
  keysendInvoice: { createdAt: number; expiresAt: number } | null;
  now: number;
}

export interface DevnetStore {
  readonly path: string;
  getMeta(key: string): string | null;
  setMeta(key: string, value: string): void;
  nodes(): NodeRow[];
  channels(): Channel[];
  /** Writes a new network in one transaction: nodes, channels, and meta entries. */
  initialize(nodes: readonly NodeRow[], channels: readonly Omit<Channel, 'id'>[], meta: Readonly<Record<string, string>>): void;
  insertInvoice(invoice: NewInvoice): void;
  invoice(node: string, paymentHash: string): InvoiceRow | null;
  /** Settled invoices of `node` with settle_index > after, in settle order. */
  settledAfter(node: string, afterSettleIndex: bigint, limit: number): InvoiceRow[];
  payment(node: string, paymentHash: string): PaymentRow | null;
  /** Records a payment as in flight: a new row, or a new attempt over a failed one. */
  beginPayment(payment: NewPayment): void;
  failPayment(node: string, paymentHash: string, reason: PaymentFailureReason, detail: string, now: number): void;
  /** Moves the money, settles the payee's invoice and marks the payment succeeded, atomically. Returns the settle index. */
  settlePayment(settlement: Settlement): bigint;
  /** After a restart: every payment still in flight never moved money (see settlePayment); mark it failed. */
  failInFlightPayments(detail: string, now: number): number;
  close(): void;
}

interface ChannelDbRow {
  id: bigint;
  node_a: string;
  node_b: string;
  capacity_msat: bigint;
  balance_a_msat: bigint;
  balance_b_msat: bigint;
  base_fee_a_msat: bigint;
  fee_ppm_a: bigint;
  base_fee_b_msat: bigint;
  fee_ppm_b: bigint;
}

interface InvoiceDbRow {
  node: string;
  payment_hash: string;
  payment_request: string;
  preimage: string;
  payment_secret: string | null;
  amount_msat: bigint;
  created_at: bigint;
  expires_at: bigint;
  keysend: bigint;
  state: 'open' | 'settled';
  amount_paid_msat: bigint | null;
  settled_at: bigint | null;
  settle_index: bigint | null;
}

interface PaymentDbRow {
  node: string;
  payment_hash: string;
  kind: 'invoice' | 'keysend';
  destination: string;
  amount_msat: bigint;
  fee_limit_msat: bigint;
  status: PaymentStatus;
  fee_msat: bigint | null;
  preimage: string | null;
  failure_reason: PaymentFailureReason | null;
  failure_detail: string | null;
  attempts: bigint;
  created_at: bigint;
  resolved_at: bigint | null;
}

function channelFromRow(row: ChannelDbRow): Channel {
  return {
    id: Number(row.id),
    nodeA: row.node_a,
    nodeB: row.node_b,
    capacityMsat: msat(row.capacity_msat),
    balanceAMsat: msat(row.balance_a_msat),
    balanceBMsat: msat(row.balance_b_msat),
    policyA: { baseMsat: msat(row.base_fee_a_msat), ppm: row.fee_ppm_a },
    policyB: { baseMsat: msat(row.base_fee_b_msat), ppm: row.fee_ppm_b },
  };
}

function invoiceFromRow(row: InvoiceDbRow): InvoiceRow {
  return {
    node: row.node,
    paymentHash: row.payment_hash,
    paymentRequest: row.payment_request,
    preimage: row.preimage,
    paymentSecret: row.payment_secret,
    amountMsat: msat(row.amount_msat),
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    keysend: row.keysend === 1n,
    state: row.state,
    amountPaidMsat: row.amount_paid_msat === null ? null : msat(row.amount_paid_msat),
    settledAt: row.settled_at === null ? null : Number(row.settled_at),
    settleIndex: row.settle_index,
  };
}

function paymentFromRow(row: PaymentDbRow): PaymentRow {
  return {
    node: row.node,
    paymentHash: row.payment_hash,
    kind: row.kind,
    destination: row.destination,
    amountMsat: msat(row.amount_msat),
    feeLimitMsat: msat(row.fee_limit_msat),
    status: row.status,
    feeMsat: row.fee_msat === null ? null : msat(row.fee_msat),
    preimage: row.preimage,
    failureReason: row.failure_reason,
    failureDetail: row.failure_detail,
    attempts: Number(row.attempts),
    createdAt: Number(row.created_at),
    resolvedAt: row.resolved_at === null ? null : Number(row.resolved_at),
  };
}

function routeToJson(route: Route): string {
  return JSON.stringify({
    totalMsat: route.totalMsat.toString(),
    feeMsat: route.feeMsat.toString(),
    hops: route.hops.map((hop) => ({ ...hop, amountMsat: hop.amountMsat.toString(), feeMsat: hop.feeMsat.toString() })),
  });
}

export function openDevnetStore(dataDir: string | null): DevnetStore {
  let path = ':memory:';
  if (dataDir !== null) {
    mkdirSync(dataDir, { recursive: true });
    path = join(dataDir, 'devnet.sqlite');
  }
  const db: SqliteDatabase = openSqlite({ path });
  // See the header: NORMAL survives a killed process in WAL mode; fake money tolerates a power cut.
  db.pragma('synchronous = NORMAL');
  migrateSqlite(db, MIGRATIONS);

  const statements = {
    getMeta: db.prepare('SELECT value FROM devnet_meta WHERE key = ?'),
    setMeta: db.prepare('INSERT INTO devnet_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
    nodes: db.prepare('SELECT name, private_key, pubkey FROM devnet_nodes ORDER BY rowid'),
    insertNode: db.prepare('INSERT INTO devnet_nodes (name, private_key, pubkey) VALUES (?, ?, ?)'),
    channels: db.prepare('SELECT * FROM devnet_channels ORDER BY id'),
    insertChannel: db.prepare(`INSERT INTO devnet_channels
      (node_a, node_b, capacity_msat, balance_a_msat, balance_b_msat, base_fee_a_msat, fee_ppm_a, base_fee_b_msat, fee_ppm_b)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    updateChannel: db.prepare('UPDATE devnet_channels SET balance_a_msat = ?, balance_b_msat = ? WHERE id = ? AND capacity_msat = ?'),
    insertInvoice: db.prepare(`INSERT INTO devnet_invoices
      (node, payment_hash, payment_request, preimage, payment_secret, amount_msat, created_at, expires_at, keysend, state)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open')`),
    invoice: db.prepare('SELECT * FROM devnet_invoices WHERE node = ? AND payment_hash = ?'),
    settledAfter: db.prepare(
      'SELECT * FROM devnet_invoices WHERE node = ? AND settle_index > ? ORDER BY settle_index LIMIT ?',
    ),
    nextSettleIndex: db.prepare('SELECT COALESCE(MAX(settle_index), 0) + 1 AS next FROM devnet_invoices WHERE node = ?'),
    settleInvoice: db.prepare(`UPDATE devnet_invoices SET state = 'settled', amount_paid_msat = ?, settled_at = ?, settle_index = ?
      WHERE node = ? AND payment_hash = ? AND state = 'open'`),
    payment: db.prepare('SELECT * FROM devnet_payments WHERE node = ? AND payment_hash = ?'),
    insertPayment: db.prepare(`INSERT INTO devnet_payments
      (node, payment_hash, kind, destination, amount_msat, fee_limit_msat, status, attempts, created_at)
      VALUES (?, ?, ?, ?, ?, ?, 'in_flight', 1, ?)`),
    retryPayment: db.prepare(`UPDATE devnet_payments SET kind = ?, destination = ?, amount_msat = ?, fee_limit_msat = ?,
      status = 'in_flight', fee_msat = NULL, preimage = NULL, failure_reason = NULL, failure_detail = NULL, route = NULL,
      attempts = attempts + 1, resolved_at = NULL
      WHERE node = ? AND payment_hash = ? AND status = 'failed'`),
    failPayment: db.prepare(`UPDATE devnet_payments SET status = 'failed', failure_reason = ?, failure_detail = ?, resolved_at = ?
      WHERE node = ? AND payment_hash = ? AND status = 'in_flight'`),
    succeedPayment: db.prepare(`UPDATE devnet_payments SET status = 'succeeded', fee_msat = ?, preimage = ?, route = ?, resolved_at = ?
      WHERE node = ? AND payment_hash = ? AND status = 'in_flight'`),
    failInFlight: db.prepare(`UPDATE devnet_payments SET status = 'failed', failure_reason = 'error', failure_detail = ?, resolved_at = ?
      WHERE status = 'in_flight'`),
  };

  const settlePayment = db.transaction((settlement: Settlement): bigint => {
    for (const channel of settlement.channels) {
      const result = statements.updateChannel.run(channel.balanceAMsat, channel.balanceBMsat, channel.id, channel.capacityMsat);
      if (result.changes !== 1) throw new Error(`devnet channel ${channel.id} was not updated`);
    }
    if (settlement.keysendInvoice !== null) {
      statements.insertInvoice.run(
        settlement.payee,
        settlement.paymentHash,
        '',
        settlement.preimage,
        null,
        settlement.amountMsat,
        settlement.keysendInvoice.createdAt,
        settlement.keysendInvoice.expiresAt,
        1,
      );
    }
    const next = (statements.nextSettleIndex.get(settlement.payee) as { next: bigint }).next;
    const settled = statements.settleInvoice.run(settlement.amountMsat, settlement.now, next, settlement.payee, settlement.paymentHash);
    if (settled.changes !== 1) throw new Error(`devnet invoice ${settlement.paymentHash} of ${settlement.payee} was not open`);
    const succeeded = statements.succeedPayment.run(
      settlement.route.feeMsat,
      settlement.preimage,
      routeToJson(settlement.route),
      settlement.now,
      settlement.payer,
      settlement.paymentHash,
    );
    if (succeeded.changes !== 1) throw new Error(`devnet payment ${settlement.paymentHash} of ${settlement.payer} was not in flight`);
    return next;
  });

  const beginPayment = db.transaction((payment: NewPayment): void => {
    const existing = statements.payment.get(payment.node, payment.paymentHash) as PaymentDbRow | undefined;
    if (existing === undefined) {
      statements.insertPayment.run(
        payment.node,
        payment.paymentHash,
        payment.kind,
        payment.destination,
        payment.amountMsat,
        payment.feeLimitMsat,
        payment.createdAt,
      );
      return;
    }
    const retried = statements.retryPayment.run(
      payment.kind,
      payment.destination,
      payment.amountMsat,
      payment.feeLimitMsat,
      payment.node,
      payment.paymentHash,
    );
    if (retried.changes !== 1) throw new Error(`devnet payment ${payment.paymentHash} of ${payment.node} is ${existing.status}, not retryable`);
  });

  return {
    path,
    getMeta(key) {
      const row = statements.getMeta.get(key) as { value: string } | undefined;
      return row?.value ?? null;
    },
    setMeta(key, value) {
      statements.setMeta.run(key, value);
    },
    nodes() {
      return (statements.nodes.all() as { name: string; private_key: string; pubkey: string }[]).map((row) => ({
        name: row.name,
        privateKeyHex: row.private_key,
        pubkey: row.pubkey,
      }));
    },
    channels() {
      return (statements.channels.all() as ChannelDbRow[]).map(channelFromRow);
    },
    initialize: db.transaction(
      (nodes: readonly NodeRow[], channels: readonly Omit<Channel, 'id'>[], meta: Readonly<Record<string, string>>) => {
        for (const row of nodes) statements.insertNode.run(row.name, row.privateKeyHex, row.pubkey);
        for (const channel of channels) {
          statements.insertChannel.run(
            channel.nodeA,
            channel.nodeB,
            channel.capacityMsat,
            channel.balanceAMsat,
            channel.balanceBMsat,
            channel.policyA.baseMsat,
            channel.policyA.ppm,
            channel.policyB.baseMsat,
            channel.policyB.ppm,
          );
        }
        for (const [key, value] of Object.entries(meta)) statements.setMeta.run(key, value);
      },
    ),
    insertInvoice(invoice) {
      statements.insertInvoice.run(
        invoice.node,
        invoice.paymentHash,
        invoice.paymentRequest,
        invoice.preimage,
        invoice.paymentSecret,
        invoice.amountMsat,
        invoice.createdAt,
        invoice.expiresAt,
        0,
      );
    },
    invoice(node, paymentHash) {
      const row = statements.invoice.get(node, paymentHash) as InvoiceDbRow | undefined;
      return row === undefined ? null : invoiceFromRow(row);
    },
    settledAfter(node, afterSettleIndex, limit) {
      return (statements.settledAfter.all(node, afterSettleIndex, limit) as InvoiceDbRow[]).map(invoiceFromRow);
    },
    payment(node, paymentHash) {
      const row = statements.payment.get(node, paymentHash) as PaymentDbRow | undefined;
      return row === undefined ? null : paymentFromRow(row);
    },
    beginPayment,
    failPayment(node, paymentHash, reason, detail, now) {
      const result = statements.failPayment.run(reason, detail, now, node, paymentHash);
      if (result.changes !== 1) throw new Error(`devnet payment ${paymentHash} of ${node} was not in flight`);
    },
    settlePayment,
    failInFlightPayments(detail, now) {
      return statements.failInFlight.run(detail, now).changes;
    },
    close() {
      db.close();
    },
  };
}
