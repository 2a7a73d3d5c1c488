/**
 * `npm run bench`: every benchmark in one run, printed as the markdown that goes into
 * docs/benchmarks.md (machine, command, date, tables). Pass --seconds N to change the
 * length of each ledger run, --no-postgres to skip PostgreSQL, --stream-seconds N the length
 * of each streams run (streams.ts), --only a,b to run some sections (ledger, invoices,
 * streams, paycall, gateway, webhooks, subscriptions).
 */
import os from 'node:os';
import { benchDevnetInvoices, devnetInvoiceTable } from './devnet-invoices.js';
import { markdownTable, runLedgerBenchmark } from './ledger.js';
import { runStreamsBenchmark, streamsMarkdown } from './streams.js';
import { payCallMarkdown, runPayCallBenchmark } from './paycall.js';
import { gatewayMarkdown, runGatewayBenchmark } from './gateway.js';
import { runWebhooksBenchmark, webhooksMarkdown } from './webhooks.js';
import { runSubscriptionsBenchmark, subscriptionsMarkdown } from './subscriptions.js';

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

const only = argValue(args, '--only')?.split(',') ?? null;
const wanted = (section: string): boolean => only === null || only.includes(section);
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const sections: string[] = [header, ''];

if (wanted('ledger')) {
  log('ledger');
  const ledger = await runLedgerBenchmark({
    secondsPerRun: Number(argValue(args, '--seconds') ?? 3),
    postgres: !args.includes('--no-postgres'),
  });
  sections.push('### Ledger: durable transfers per second', '', markdownTable(ledger), '');
}
if (wanted('invoices')) {
  log('devnet invoices');
  sections.push('### Devnet: invoices created per second', '', devnetInvoiceTable(await benchDevnetInvoices()), '');
}
if (wanted('streams')) {
  log('streams');
  sections.push(streamsMarkdown(await runStreamsBenchmark({ secondsPerRun: Number(argValue(args, '--stream-seconds') ?? 5) })));
}
if (wanted('paycall')) {
  log('pay per call: verifications');
  sections.push(payCallMarkdown(await runPayCallBenchmark({ seconds: Number(argValue(args, '--seconds') ?? 3), log })));
}
if (wanted('gateway')) {
  log('pay per call: gateway');
  sections.push(gatewayMarkdown(await runGatewayBenchmark({ seconds: Number(argValue(args, '--seconds') ?? 5), log })));
}
if (wanted('webhooks')) {
  log('webhooks');
  sections.push('### Webhooks: deliveries per second to a local receiver', '', webhooksMarkdown(await runWebhooksBenchmark(args.includes('--no-postgres') ? { stores: ['sqlite'] } : {})), '');
}
if (wanted('subscriptions')) {
  log('subscriptions');
  sections.push('### Subscriptions: billing 100,000 subscriptions with one-minute increments', '', subscriptionsMarkdown(await runSubscriptionsBenchmark()));
}

process.stdout.write(sections.join('\n'));
