/**
 * The `sluice` command line: `start` runs the server; every other command except `decode`
 * talks to a running server through the SDK (@sluice/client).
 *
 * Output is for people unless --json is given; then stdout holds exactly one JSON document
 * (the server's answer, amounts as decimal strings of msat) and notes go to stderr.
 * Failures print `error <code>: <message>` to stderr; exit codes are listed in EXIT.
 */
import { Command, CommanderError, Option } from 'commander';
import { SluiceClient, SluiceError, newIdempotencyKey, stringifyJson, type Invoice, type Payment } from '@sluice/client';
import { parseMsat } from '../money/msat.js';
import { runDecode } from './decode.js';
import { amount, formatRows, formatTable, time } from './format.js';
import { CliError, CliExit, EXIT, type CliIo } from './io.js';
import { runStart, type StartDeps } from './start.js';
import { runGateway } from './gateway.js';

export const DEFAULT_URL = 'http://127.0.0.1:8402';

interface GlobalOptions {
  url?: string;
  key?: string;
  json?: boolean;
}

/** Which key a command uses when --key is not given. */
type KeyKind = 'app' | 'admin' | 'any' | 'optional';

function parseAmountArgument(text: string, name: string): bigint {
  const parsed = parseMsat(text);
  if (!parsed.ok) throw new CliError('invalid_amount', `${name} must be a whole number of millisatoshis (digits only), got ${JSON.stringify(text)}`);
  return parsed.value;
}

function parseIntegerArgument(text: string, name: string, unit: string): number {
  if (!/^[0-9]{1,9}$/.test(text)) throw new CliError('invalid_request', `${name} must be a whole number${unit}, got ${JSON.stringify(text)}`);
  return Number(text);
}

function describeInvoiceRows(invoice: Invoice): string {
  return formatRows([
    ['payment hash', invoice.payment_hash],
    ['amount', amount(invoice.amount_msat)],
    ['description', invoice.description === '' ? null : JSON.stringify(invoice.description)],
    ['status', invoice.status],
    ['created', time(invoice.created_at)],
    ['expires', time(invoice.expires_at)],
    ['paid', time(invoice.paid_at)],
    ['amount paid', invoice.amount_paid_msat === null ? null : amount(invoice.amount_paid_msat)],
  ]);
}

function describePaymentRows(payment: Payment): string {
  return formatRows([
    ['status', payment.status],
    ['payment hash', payment.payment_hash],
    ['kind', payment.kind],
    ['destination', payment.destination],
    ['amount', amount(payment.amount_msat)],
    ['fee', payment.fee_msat === null ? null : amount(payment.fee_msat)],
    ['max fee', amount(payment.max_fee_msat)],
    ['preimage', payment.preimage],
    ['failure', payment.failure_reason],
    ['created', time(payment.created_at)],
    ['resolved', time(payment.resolved_at)],
  ]);
}

export interface CliDeps {
  io: CliIo;
  /** For `start`, which runs until a signal. */
  start: Omit<StartDeps, 'io'>;
  /** Unix seconds, for `decode`'s "EXPIRED". */
  nowS(): number;
}

/** `keepsRunning` is set when the command runs on after parseAsync resolves (`start`). */
export function createProgram(deps: CliDeps, state: { keepsRunning: boolean } = { keepsRunning: false }): Command {
  const { io } = deps;
  const program = new Command('sluice');
  program
    .description('Sluice: a self-hosted Lightning micropayment server, and a client for it.')
    .version('0.1.0', '-V, --version')
    .option('--url <url>', `address of a running Sluice (default: env SLUICE_URL or ${DEFAULT_URL})`)
    .option('--key <key>', 'API key (default: env SLUICE_API_KEY, or SLUICE_ADMIN_KEY for admin commands)')
    .option('--json', 'print the JSON answer for scripts instead of text for people')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 error (stderr says "error <code>: <message>"), 2 bad usage or configuration,\n3 payment still pending (sluice pay). Amounts are whole millisatoshis (msat).\n',
    )
    .configureOutput({ writeOut: (text) => io.stdout(text), writeErr: (text) => io.stderr(text) })
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  const globals = (command: Command): GlobalOptions => command.optsWithGlobals<GlobalOptions>();

  const clientFor = (command: Command, kind: KeyKind): SluiceClient => {
    const options = globals(command);
    const env = io.env;
    const nonEmpty = (value: string | undefined) => (value === undefined || value === '' ? undefined : value);
    const fromEnv =
      kind === 'admin'
        ? nonEmpty(env.SLUICE_ADMIN_KEY)
        : kind === 'any'
          ? nonEmpty(env.SLUICE_API_KEY) ?? nonEmpty(env.SLUICE_ADMIN_KEY)
          : nonEmpty(env.SLUICE_API_KEY);
    const apiKey = nonEmpty(options.key) ?? fromEnv;
    if (apiKey === undefined && kind !== 'optional') {
      const where = kind === 'admin' ? 'SLUICE_ADMIN_KEY' : kind === 'any' ? 'SLUICE_API_KEY or SLUICE_ADMIN_KEY' : 'SLUICE_API_KEY';
      throw new CliError('unauthorized', `this command needs ${kind === 'admin' ? 'the admin key' : 'an API key'}: pass --key or set ${where}`);
    }
    const baseUrl = nonEmpty(options.url) ?? nonEmpty(env.SLUICE_URL) ?? DEFAULT_URL;
    try {
      return new SluiceClient({ baseUrl, apiKey });
    } catch (error) {
      throw new CliError('invalid_request', error instanceof Error ? error.message : String(error), EXIT.usage);
    }
  };

  /** --json prints the answer as the server sent it; otherwise `human` renders it. */
  const print = (command: Command, value: unknown, human: () => string): void => {
    io.stdout(globals(command).json ? stringifyJson(value, 2) + '\n' : human());
  };

  program
    .command('start')
    .description('run the server (settings from the environment: see docs/config.md)')
    .action(async () => {
      state.keepsRunning = true;
      await runStart({ io, ...deps.start });
    });

  program
    .command('gateway')
    .description('run the server (as `start`) plus a pay-per-call reverse proxy in front of an HTTP API (see docs/gateway.md)')
    .requiredOption('--config <file>', 'the gateway config, JSON or YAML')
    .action(async (options: { config: string }) => {
      state.keepsRunning = true;
      await runGateway({ io, ...deps.start }, options.config);
    });

  program
    .command('decode')
    .description('decode a BOLT 11 invoice locally (no server needed)')
    .argument('<bolt11>', 'the invoice')
    .action((bolt11: string, _options: unknown, command: Command) => {
      runDecode(io, bolt11, { json: globals(command).json === true, nowS: deps.nowS() });
    });

  program
    .command('status')
    .description("the server's health, and the app's balance when an app key is set")
    .action(async (_options: unknown, command: Command) => {
      const client = clientFor(command, 'optional');
      const health = await client.health();
      const hasKey = globals(command).key !== undefined || (io.env.SLUICE_API_KEY ?? '') !== '';
      let balance = null;
      let balanceNote: string | null = hasKey ? null : 'no app key (set SLUICE_API_KEY or pass --key)';
      if (hasKey) {
        try {
          balance = await client.balance();
        } catch (error) {
          if (!(error instanceof SluiceError && error.code === 'forbidden')) throw error;
          balanceNote = 'the key is not an app key';
        }
      }
      print(command, { health, balance }, () => {
        const { lightning } = health;
        return (
          `Sluice at ${client.baseUrl}: ${health.status}\n` +
          formatRows([
            ['lightning', `${lightning.backend} (${lightning.network})${lightning.fake_money ? ' — FAKE MONEY' : ''}`],
            ['node', lightning.pubkey],
            ['store', health.store],
            ['balance', balance === null ? balanceNote : amount(balance.balance_msat)],
            ['held', balance === null ? null : amount(balance.held_msat)],
            ['available', balance === null ? null : amount(balance.available_msat)],
          ])
        );
      });
    });

  const apps = program.command('apps').description('manage apps (admin key)');
  apps
    .command('create')
    .description('create an app and its first API key')
    .option('--name <name>', 'a name for people')
    .action(async (options: { name?: string }, command: Command) => {
      const created = await clientFor(command, 'admin').createApp(options.name === undefined ? {} : { name: options.name });
      print(command, created, () =>
        'app created\n' +
        formatRows([
          ['id', created.id],
          ['name', created.name],
          ['api key', created.api_key],
          ['', 'save this key now, it will not be shown again'],
          ['key id', created.key_id],
        ]),
      );
    });
  apps
    .command('list')
    .description('list apps')
    .action(async (_options: unknown, command: Command) => {
      const list = await clientFor(command, 'admin').listApps();
      print(command, { apps: list }, () =>
        list.length === 0
          ? 'no apps yet (create one with: sluice apps create --name NAME)\n'
          : formatTable(
              ['ID', 'NAME', 'CREATED', 'REVOKED'],
              list.map((app) => [app.id, app.name, app.created_at.toISOString(), app.revoked_at?.toISOString() ?? '-']),
            ),
      );
    });
  apps
    .command('revoke')
    .description('revoke an app and all its API keys')
    .argument('<app_id>')
    .action(async (appId: string, _options: unknown, command: Command) => {
      const app = await clientFor(command, 'admin').revokeApp(appId);
      print(command, app, () => `app ${app.id} (${app.name}) revoked at ${time(app.revoked_at) ?? '?'}\n`);
    });

  program
    .command('invoice')
    .description("create an invoice that credits the app (app key)")
    .argument('<msat>', 'amount in millisatoshis')
    .option('--description <text>', 'shown to the payer')
    .option('--expiry <seconds>', 'seconds until it expires (default: the server\'s)')
    .action(async (msatText: string, options: { description?: string; expiry?: string }, command: Command) => {
      const amountMsat = parseAmountArgument(msatText, 'msat');
      const invoice = await clientFor(command, 'app').createInvoice({
        amount_msat: amountMsat,
        ...(options.description === undefined ? {} : { description: options.description }),
        ...(options.expiry === undefined ? {} : { expiry_s: parseIntegerArgument(options.expiry, '--expiry', ' of seconds') }),
      });
      print(command, invoice, () => `${invoice.payment_request}\n` + describeInvoiceRows(invoice));
    });

  program
    .command('pay')
    .description("pay a BOLT 11 invoice from the app's balance (app key)")
    .argument('<bolt11>', 'the invoice')
    .option('--max-fee <msat>', 'the most to pay in routing fees')
    .option('--amount <msat>', 'only for invoices without an amount')
    .addOption(new Option('--idempotency-key <key>', 'retry a payment safely with the key printed by an earlier try (default: a new key)'))
    .action(async (bolt11: string, options: { maxFee?: string; amount?: string; idempotencyKey?: string }, command: Command) => {
      const maxFeeMsat = options.maxFee === undefined ? undefined : parseAmountArgument(options.maxFee, '--max-fee');
      const amountMsat = options.amount === undefined ? undefined : parseAmountArgument(options.amount, '--amount');
      const client = clientFor(command, 'app');
      const idempotencyKey = options.idempotencyKey ?? newIdempotencyKey();
      // Before sending: if the answer never arrives, this key is how to retry without paying twice.
      if (options.idempotencyKey === undefined) {
        io.stderr(`idempotency key: ${idempotencyKey} (to retry this payment safely: --idempotency-key ${idempotencyKey})\n`);
      }
      const payment = await client.pay({
        payment_request: bolt11.trim(),
        idempotency_key: idempotencyKey,
        ...(maxFeeMsat === undefined ? {} : { max_fee_msat: maxFeeMsat }),
        ...(amountMsat === undefined ? {} : { amount_msat: amountMsat }),
      });
      print(command, payment, () => describePaymentRows(payment));
      if (payment.status === 'failed') {
        throw new CliError('payment_failed', `the payment failed: ${payment.failure_reason ?? 'no reason given'}`);
      }
      if (payment.status === 'pending') {
        io.stderr(`the payment is pending: its outcome is not known yet. Check later with: sluice payments get ${payment.payment_hash}\n`);
        throw new CliExit(EXIT.pending);
      }
    });

  const invoices = program.command('invoices').description("the app's invoices (app key)");
  invoices
    .command('list')
    .option('--limit <n>', 'how many, newest first (1-1000)', '20')
    .action(async (options: { limit: string }, command: Command) => {
      const list = await clientFor(command, 'app').listInvoices({ limit: parseIntegerArgument(options.limit, '--limit', '') });
      print(command, { invoices: list }, () =>
        formatTable(
          ['PAYMENT HASH', 'AMOUNT MSAT', 'STATUS', 'CREATED'],
          list.map((invoice) => [invoice.payment_hash, invoice.amount_msat.toString(), invoice.status, invoice.created_at.toISOString()]),
        ),
      );
    });
  invoices
    .command('get')
    .argument('<payment_hash>')
    .action(async (paymentHash: string, _options: unknown, command: Command) => {
      const invoice = await clientFor(command, 'app').getInvoice(paymentHash);
      print(command, invoice, () => `${invoice.payment_request}\n` + describeInvoiceRows(invoice));
    });

  const payments = program.command('payments').description("the app's payments (app key)");
  payments
    .command('list')
    .option('--limit <n>', 'how many, newest first (1-1000)', '20')
    .action(async (options: { limit: string }, command: Command) => {
      const list = await clientFor(command, 'app').listPayments({ limit: parseIntegerArgument(options.limit, '--limit', '') });
      print(command, { payments: list }, () =>
        formatTable(
          ['PAYMENT HASH', 'AMOUNT MSAT', 'FEE MSAT', 'STATUS', 'CREATED'],
          list.map((payment) => [payment.payment_hash, payment.amount_msat.toString(), payment.fee_msat?.toString() ?? '-', payment.status, payment.created_at.toISOString()]),
        ),
      );
    });
  payments
    .command('get')
    .argument('<payment_hash>')
    .action(async (paymentHash: string, _options: unknown, command: Command) => {
      const payment = await clientFor(command, 'app').getPayment(paymentHash);
      print(command, payment, () => describePaymentRows(payment));
    });

  const devnet = program.command('devnet').description('the devnet\'s simulated wallets (FAKE MONEY; devnet backend only)');
  devnet
    .command('pay')
    .description('a devnet wallet pays an invoice, e.g. one from `sluice invoice`')
    .argument('<bolt11>', 'the invoice')
    .option('--wallet <name>', 'alice, bob, carol, dave or erin (default alice)')
    .option('--amount <msat>', 'only for invoices without an amount')
    .action(async (bolt11: string, options: { wallet?: string; amount?: string }, command: Command) => {
      const amountMsat = options.amount === undefined ? undefined : parseAmountArgument(options.amount, '--amount');
      const paid = await clientFor(command, 'any').devnetPay({
        payment_request: bolt11.trim(),
        ...(options.wallet === undefined ? {} : { wallet: options.wallet }),
        ...(amountMsat === undefined ? {} : { amount_msat: amountMsat }),
      });
      print(command, paid, () =>
        `paid by devnet wallet ${paid.wallet} (fake money)\n` +
        formatRows([
          ['payment hash', paid.payment_hash],
          ['amount', amount(paid.amount_msat)],
          ['fee', amount(paid.fee_msat)],
          ['preimage', paid.preimage],
        ]),
      );
    });
  devnet
    .command('invoice')
    .description('a devnet wallet issues an invoice, e.g. for `sluice pay`')
    .argument('<msat>', 'amount in millisatoshis')
    .option('--wallet <name>', 'alice, bob, carol, dave or erin (default alice)')
    .option('--description <text>', 'the invoice description')
    .action(async (msatText: string, options: { wallet?: string; description?: string }, command: Command) => {
      const amountMsat = parseAmountArgument(msatText, 'msat');
      const invoice = await clientFor(command, 'any').devnetInvoice({
        amount_msat: amountMsat,
        ...(options.wallet === undefined ? {} : { wallet: options.wallet }),
        ...(options.description === undefined ? {} : { description: options.description }),
      });
      print(command, invoice, () =>
        `${invoice.payment_request}\n` +
        formatRows([
          ['wallet', `${invoice.wallet} (fake money)`],
          ['payment hash', invoice.payment_hash],
          ['amount', amount(invoice.amount_msat)],
          ['expires', time(invoice.expires_at)],
        ]),
      );
    });
  devnet
    .command('wallets')
    .description("the devnet wallets' balances")
    .action(async (_options: unknown, command: Command) => {
      const wallets = await clientFor(command, 'any').devnetWallets();
      print(command, wallets, () =>
        formatTable(['WALLET', 'BALANCE MSAT'], wallets.wallets.map((wallet) => [wallet.name, wallet.balance_msat.toString()])) + '(fake money)\n',
      );
    });

  return program;
}

/**
 * Runs one command line (without "node" and the script path) and returns its exit code,
 * or null when the command keeps running (`start`) and will exit by itself.
 */
export async function runCli(argv: readonly string[], deps: CliDeps): Promise<number | null> {
  const state = { keepsRunning: false };
  const program = createProgram(deps, state);
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return state.keepsRunning ? null : EXIT.ok;
  } catch (error) {
    if (error instanceof CliExit) return error.exitCode;
    if (error instanceof CommanderError) {
      // Help and version exit 0; every other parse error is bad usage (commander printed it).
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    if (error instanceof SluiceError || error instanceof CliError) {
      deps.io.stderr(`error ${error.code}: ${error.message}\n`);
      return error instanceof CliError ? error.exitCode : EXIT.error;
    }
    throw error;
  }
}
