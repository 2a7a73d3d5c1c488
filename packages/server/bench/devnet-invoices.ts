/**
 * Invoices created per second on the devnet: each one is a real BOLT 11 invoice signed with
 * the node's secp256k1 key and stored in devnet.sqlite. Measured through the
 * LightningBackend interface (what Sluice calls), sequentially and with concurrent callers.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openDevnet } from '../src/lightning/devnet/index.js';
import { msat } from '../src/money/msat.js';

export interface DevnetInvoiceBenchRow {
  concurrency: number;
  invoices: number;
  seconds: number;
  perSecond: number;
}

export async function benchDevnetInvoices(options: { invoices?: number; concurrencies?: number[] } = {}): Promise<DevnetInvoiceBenchRow[]> {
  const total = options.invoices ?? 3000;
  const rows: DevnetInvoiceBenchRow[] = [];
  for (const concurrency of options.concurrencies ?? [1, 16]) {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-bench-devnet-'));
    const devnet = await openDevnet({ dataDir, seed: 'bench' });
    const backend = devnet.backendFor('sluice');
    let issued = 0;
    const started = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (issued < total) {
          issued += 1;
          await backend.createInvoice({ amountMsat: msat(1000n + BigInt(issued)), description: 'bench', expiryS: 3600 });
        }
      }),
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    rows.push({ concurrency, invoices: issued, seconds, perSecond: issued / seconds });
    await devnet.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return rows;
}

export function devnetInvoiceTable(rows: DevnetInvoiceBenchRow[]): string {
  const lines = ['| concurrent callers | invoices | seconds | invoices/s |', '| ---: | ---: | ---: | ---: |'];
  for (const row of rows) lines.push(`| ${row.concurrency} | ${row.invoices} | ${row.seconds.toFixed(2)} | ${Math.round(row.perSecond).toLocaleString('en-US')} |`);
  return lines.join('\n');
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const rows = await benchDevnetInvoices();
  console.log(devnetInvoiceTable(rows));
}
