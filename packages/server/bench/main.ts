/**
 * `npm run bench`: every benchmark in one run, printed as the markdown that goes into
 * docs/benchmarks.md (machine, command, date, tables). Pass --seconds N to change the
 * length of each ledger run, --no-postgres to skip PostgreSQL, --stream-seconds N the length
 * of each streams run (streams.ts).
 */
import os from 'node:os';
import { benchDevnetInvoices, devnetInvoiceTable } from './devnet-invoices.js';
import { markdownTable, runLedgerBenchmark } from './ledger.js';
import { runStreamsBenchmark, streamsMarkdown } from './streams.js';

function argValue(args: string[], name: string): string | undefined {
  const index = args.indexOf(name);
  return index >= 0 ? args[index + 1] : undefined;
}

const args = process.argv.slice(2);
const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
const header = [
  `Run on ${new Date().toISOString().slice(0, 10)}: ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM,`,
  `${os.type()} ${os.release()}, Node ${process.version}. Command: \`npm run bench${args.length ? ' -- ' + args.join(' ') : ''}\`.`,
].join('\n');

const ledger = await runLedgerBenchmark({
  secondsPerRun: Number(argValue(args, '--seconds') ?? 3),
  postgres: !args.includes('--no-postgres'),
});
const invoices = await benchDevnetInvoices();
const streams = await runStreamsBenchmark({ secondsPerRun: Number(argValue(args, '--stream-seconds') ?? 5) });

process.stdout.write(
  [
    header,
    '',
    '### Ledger: durable transfers per second',
    '',
    markdownTable(ledger),
    '',
    '### Devnet: invoices created per second',
    '',
    devnetInvoiceTable(invoices),
    '',
    streamsMarkdown(streams),
  ].join('\n'),
);
