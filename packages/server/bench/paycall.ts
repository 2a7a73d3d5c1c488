/**
 * Issue 4's verification benchmark, in one process and one run:
 * - the limit: raw `crypto.hash('sha256', ...)` calls per second on 32-byte inputs;
 * - hash-chain tokens through the real `chain` scheme of a real Sluice (SQLite, devnet):
 *   the verification (header parse, one SHA-256, compare, in-memory index advance) timed on
 *   its own, and the same calls answered only once the new index is durable (group
 *   commit). Chains are bought and paid on the devnet first; links are computed before the
 *   timed part (the client's cost);
 * - L402: the verifier (header, macaroon signature, preimage, caveats), and calls through
 *   the real `l402` scheme answered once the token's budget step is durable.
 * Targets: chain verification >= 50% of the raw hash rate, and >= 10x L402.
 *
 * Run alone: `npm run build && npx tsx packages/server/bench/paycall.ts [--seconds N]`.
 */
import { createHash, randomBytes } from 'node:crypto';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pino from 'pino';
import { createSluice, type Sluice } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { msat } from '../src/money/msat.js';
import { createChainScheme } from '../src/paycall/chain/index.js';
import { formatChainHeader, parseChainHeader } from '../src/paycall/chain/math.js';
import { loadL402Secret, mintSelfPaidCredential } from '../src/paycall/l402/index.js';
import type { CallPrice, GateOutcome, GateRequest } from '../src/paycall/gate.js';

export interface PayCallBenchRow {
  what: string;
  /** Operations per second. */
  perS: number;
  operations: number;
  seconds: number;
  note: string;
}

export interface PayCallBenchReport {
  rows: PayCallBenchRow[];
  /** chain verification (the verifier alone, as the L402 row) ÷ raw hash. */
  chainShareOfHash: number;
  /** chain verification ÷ L402 verification. */
  chainOverL402: number;
  /** the synchronous part of a chain spend ÷ the raw hash timed between its rounds (same load). */
  spendShareOfInterleavedHash: number;
  /** durable chain calls ÷ durable L402 calls. */
  durableChainOverL402: number;
}

/** Node 20.12+ has the one-shot crypto.hash; fall back to createHash elsewhere. */
const oneShotHash: ((algorithm: string, data: Buffer, encoding: 'buffer') => Buffer) | undefined = (crypto as unknown as { hash?: (a: string, d: Buffer, e: 'buffer') => Buffer }).hash;

/** The raw hash both raw rows time, so the two sides of the ratio time the same call. */
const rawSha256 = (data: Buffer): Buffer => (oneShotHash ? oneShotHash('sha256', data, 'buffer') : createHash('sha256').update(data).digest());

function rawHashRate(seconds: number): PayCallBenchRow {
  let link: Buffer = randomBytes(32);
  let operations = 0;
  const started = process.hrtime.bigint();
  const until = started + BigInt(Math.round(seconds * 1e9));
  for (;;) {
    for (let i = 0; i < 10_000; i++) link = rawSha256(link);
    operations += 10_000;
    if (process.hrtime.bigint() >= until) break;
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return { what: 'raw SHA-256 of 32 bytes', perS: operations / elapsed, operations, seconds: elapsed, note: oneShotHash ? "crypto.hash('sha256', buf)" : 'createHash (crypto.hash missing)' };
}

/**
 * A header value as node:http hands it to the server: one flat string read from the
 * socket's bytes. A template literal builds a rope (a V8 cons string) instead, which the
 * server's first read of it would have to flatten: a copy no real request costs.
 */
const asReceived = (value: string): string => Buffer.from(value, 'latin1').toString('latin1');

/** w_0 .. w_steps in one buffer (w_i at i x 32). */
function chainLinks(steps: number): Buffer {
  const links = Buffer.allocUnsafe((steps + 1) * 32);
  let link = randomBytes(32);
  for (let index = steps; index >= 0; index--) {
    link.copy(links, index * 32);
    link = createHash('sha256').update(link).digest();
  }
  return links;
}

async function api(base: string, method: string, route: string, body: unknown, key: string): Promise<any> {
  const response = await fetch(`${base}${route}`, {
    method,
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify(body),
  });
  const parsed = await response.json();
  if (response.status >= 300) throw new Error(`${method} ${route}: ${response.status} ${JSON.stringify(parsed)}`);
  return parsed;
}

async function startSluice(dataDir: string, adminKey: string): Promise<{ sluice: Sluice; base: string }> {
  const loaded = loadConfig({
    SLUICE_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'silent', SLUICE_ADMIN_KEY: adminKey,
    SLUICE_CHAIN_STEP_MSAT: '1', SLUICE_RATE_LIMIT_PER_MINUTE: '1000000', SLUICE_DEVNET_SEED: 'paycall-bench',
  });
  if (!loaded.ok) throw new Error(loaded.errors.join('\n'));
  const sluice = await createSluice(loaded.config, { logger: pino({ level: 'silent' }) });
  const base = await sluice.listen();
  return { sluice, base };
}

/**
 * The chain verifier alone, as the L402 row times its verifier: the header parsed, then
 * judged against the chain in memory (app, status, expiry, price in steps, index, one
 * SHA-256, compare), nothing spent. Each chain's next link, over and over, in a tight loop
 * that pays for its own garbage collection (as the raw hash row's loop does).
 */
function chainVerifierRate(sluice: Sluice, headers: readonly string[], price: CallPrice, seconds: number): PayCallBenchRow {
  let operations = 0;
  const started = process.hrtime.bigint();
  const until = started + BigInt(Math.round(seconds * 1e9));
  for (;;) {
    for (let i = 0; i < 1000; i++) {
      const credential = parseChainHeader(headers[i % headers.length]);
      const verdict = credential && sluice.chains.verify(credential.chainId, credential.index, credential.link, price);
      if (!verdict?.ok) throw new Error(`chain verification refused: ${JSON.stringify(verdict)}`);
    }
    operations += 1000;
    if (process.hrtime.bigint() >= until) break;
  }
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  return {
    what: 'chain-token verification',
    perS: operations / elapsed, operations, seconds: elapsed,
    note: 'the verifier alone (as the L402 row): header parse, chain lookup, app, status, expiry and price checks, 1 SHA-256, compare; nothing spent',
  };
}

/**
 * Chain verifications: `chains` chains, each with `window` calls in flight at a time (a
 * client may send its next links before the previous answers: the index advances
 * synchronously, in order). Counts calls answered `allowed`.
 */
async function chainRates(sluice: Sluice, base: string, adminKey: string, options: { chains: number; steps: number; window: number; seconds: number }): Promise<[PayCallBenchRow, PayCallBenchRow, PayCallBenchRow, PayCallBenchRow]> {
  const app = await api(base, 'POST', '/v1/apps', { name: 'paycall-bench' }, adminKey);
  const appId = app.id as string;
  const scheme = createChainScheme(sluice.chains, { buyUrl: `${base}/v1/paycall/chains` });
  const bought: { id: string; links: Buffer }[] = [];
  for (let c = 0; c < options.chains; c++) {
    const links = chainLinks(options.steps);
    const chain = await api(base, 'POST', '/v1/paycall/chains', { app_id: appId, anchor: links.subarray(0, 32).toString('hex'), steps: options.steps }, adminKey);
    await api(base, 'POST', '/v1/devnet/pay', { payment_request: chain.invoice.payment_request, wallet: 'alice' }, adminKey);
    bought.push({ id: chain.chain_id, links });
  }
  // Wait until every purchase is active in memory (the invoice watcher credits them).
  for (const { id } of bought) {
    for (let tries = 0; ; tries++) {
      const view = await (await fetch(`${base}/v1/paycall/chains/${id}`)).json();
      if (view.status === 'active') break;
      if (tries > 500) throw new Error(`chain ${id} never became active: ${JSON.stringify(view)}`);
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }
  const price: CallPrice = { priceMsat: msat(1n), appId, service: 'bench' };
  const firstLinks = bought.map(({ id, links }) => asReceived(formatChainHeader({ chainId: id, index: 1, link: links.subarray(32, 64) })));
  const verifier = chainVerifierRate(sluice, firstLinks, price, options.seconds);
  // Rounds of `chains x window` calls: the calls of a round are issued back to back (the
  // synchronous part of each: header parse, one SHA-256, compare, in-memory advance), then
  // the round is awaited (its group commit). The first clock is the verification rate, the
  // second the rate of calls answered after their index is durable. A round's headers are
  // built before its first clock starts (the client's cost, not the server's), and only a
  // round's worth at a time, so the benchmark's own garbage does not weigh on the server's.
  let allowed = 0;
  let refused = '';
  let verifyNs = 0n;
  // The raw hash again, as many calls as each round verifies, timed right after the round:
  // on a shared machine the load changes from second to second, and the ratio is only
  // meaningful between figures taken under the same load.
  let hashLink: Buffer = randomBytes(32);
  let hashNs = 0n;
  let hashed = 0;
  const started = process.hrtime.bigint();
  for (let step = 0; step < options.steps; step += options.window) {
    const last = Math.min(step + options.window, options.steps);
    const requests: GateRequest[] = [];
    for (const { id, links } of bought) {
      for (let i = step; i < last; i++) {
        requests.push({ method: 'GET', path: '/paid', headers: { 'sluice-chain': asReceived(formatChainHeader({ chainId: id, index: i + 1, link: links.subarray((i + 1) * 32, (i + 2) * 32) })) } });
      }
    }
    const pending: Promise<GateOutcome>[] = new Array(requests.length);
    const roundStart = process.hrtime.bigint();
    // Only the calls inside the clock: the benchmark's tally of the answers is its own work
    // (a closure and a promise per call), done once the round is answered.
    for (let r = 0; r < requests.length; r++) pending[r] = scheme.authorize(requests[r] as GateRequest, price);
    verifyNs += process.hrtime.bigint() - roundStart;
    const hashStart = process.hrtime.bigint();
    for (let r = 0; r < requests.length; r++) hashLink = rawSha256(hashLink);
    hashNs += process.hrtime.bigint() - hashStart;
    hashed += requests.length;
    for (const outcome of await Promise.all(pending)) {
      if (outcome.kind === 'allowed') allowed += 1;
      else refused ||= `${outcome.code}: ${outcome.message}`;
    }
  }
  const verifySeconds = Number(verifyNs) / 1e9;
  const hashSeconds = Number(hashNs) / 1e9;
  // The interleaved raw hashes are the benchmark's own work, not the calls': not counted.
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9 - hashSeconds;
  if (refused) throw new Error(`a chain call was refused: ${refused}`);
  return [
    verifier,
    {
      what: 'chain-token spend, synchronous part',
      perS: allowed / verifySeconds, operations: allowed, seconds: verifySeconds,
      note: 'each call through the scheme up to its wait for the commit: the verification, the index advance in memory, and joining the group commit (a promise per call)',
    },
    {
      what: 'chain-token call, durable',
      perS: allowed / elapsed, operations: allowed, seconds: elapsed,
      note: `the same calls answered only after the new index is durable (group commit, SQLite synchronous=FULL); ${options.chains} chains x ${options.window} calls per round`,
    },
    {
      what: 'raw SHA-256 of 32 bytes, interleaved',
      perS: hashed / hashSeconds, operations: hashed, seconds: hashSeconds,
      note: 'the raw hash again, one round\'s worth right after each round of chain spends (the same load as the row below it)',
    },
  ];
}

async function l402Rates(sluice: Sluice, seconds: number, tokens: number): Promise<PayCallBenchRow[]> {
  const secret = await loadL402Secret(sluice.records);
  const service = 'bench';
  const validUntilS = Math.floor(Date.now() / 1000) + 3600;
  const credentials = Array.from({ length: tokens }, () => mintSelfPaidCredential({ secret, service, budgetMsat: null, validUntilS }).authorization);

  // Pure verification: header, macaroon HMAC chain, preimage, caveats.
  let pure = 0;
  const pureStart = process.hrtime.bigint();
  const pureUntil = pureStart + BigInt(Math.round(seconds * 1e9));
  for (;;) {
    for (let i = 0; i < 1000; i++) {
      const verdict = sluice.l402.verifier.verify(credentials[i % tokens], { service, capability: 'get' });
      if (!verdict.ok) throw new Error(`L402 verification refused: ${verdict.code} ${verdict.message}`);
    }
    pure += 1000;
    if (process.hrtime.bigint() >= pureUntil) break;
  }
  const pureElapsed = Number(process.hrtime.bigint() - pureStart) / 1e9;

  // Through the scheme: verification plus the budget step made durable.
  const price: CallPrice = { priceMsat: msat(1n), appId: 'bench', service };
  let durable = 0;
  let refused = '';
  const until = Date.now() + seconds * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    credentials.map(async (authorization) => {
      while (Date.now() < until) {
        const outcome = await sluice.l402.scheme.authorize({ method: 'GET', path: '/paid', headers: { authorization } }, price);
        if (outcome.kind === 'allowed') durable += 1;
        else {
          refused ||= `${outcome.code}: ${outcome.message}`;
          return;
        }
      }
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  if (refused) throw new Error(`an L402 call was refused: ${refused}`);
  return [
    { what: 'L402 verification', perS: pure / pureElapsed, operations: pure, seconds: pureElapsed, note: 'the verifier: header, base64, macaroon HMAC chain, SHA-256 of the preimage, caveats' },
    { what: 'L402 call, durable', perS: durable / elapsed, operations: durable, seconds: elapsed, note: `through the scheme, ${tokens} tokens in parallel: verification plus the budget step made durable (group commit) before the answer` },
  ];
}

export async function runPayCallBenchmark(options: { seconds?: number; log?: (line: string) => void } = {}): Promise<PayCallBenchReport> {
  const seconds = options.seconds ?? 3;
  const log = options.log ?? (() => {});
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-paycall-bench-'));
  const adminKey = `sa_bench-${randomBytes(12).toString('hex')}`;
  const { sluice, base } = await startSluice(dataDir, adminKey);
  try {
    log('raw hash');
    const raw = rawHashRate(seconds);
    log('chain tokens');
    // About 3 s of calls at the rates seen here; links are precomputed (1.6M hashes).
    const [chain, chainSpend, chainDurable, rawInterleaved] = await chainRates(sluice, base, adminKey, { chains: 64, steps: Number(process.env.BENCH_CHAIN_STEPS ?? 25_000), window: 16, seconds });
    log('L402');
    const [l402Pure, l402Durable] = (await l402Rates(sluice, seconds, 256)) as [PayCallBenchRow, PayCallBenchRow];
    const rows = [raw, chain, l402Pure, rawInterleaved, chainSpend, chainDurable, l402Durable];
    return {
      rows,
      chainShareOfHash: chain.perS / raw.perS,
      chainOverL402: chain.perS / l402Pure.perS,
      spendShareOfInterleavedHash: chainSpend.perS / rawInterleaved.perS,
      durableChainOverL402: chainDurable.perS / l402Durable.perS,
    };
  } finally {
    await sluice.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

const fmt = (value: number): string => Math.round(value).toLocaleString('en-US');

export function payCallMarkdown(report: PayCallBenchReport): string {
  return [
    '### Pay per call: verifications per second (one process)',
    '',
    '| what | per second | operations | seconds | how |',
    '| --- | ---: | ---: | ---: | --- |',
    ...report.rows.map((row) => `| ${row.what} | ${fmt(row.perS)} | ${row.operations} | ${row.seconds.toFixed(2)} | ${row.note} |`),
    '',
    // The verifier rows are timed alike (tight loops over the same credentials, each paying
    // for its own garbage); the spend rounds and the hashes between them leave theirs outside.
    `Chain verification = ${(report.chainShareOfHash * 100).toFixed(0)}% of the raw hash rate (target >= 50%) and ${report.chainOverL402.toFixed(1)}x L402 verification (target >= 10x). ` +
      `A whole spend's synchronous part (verification, advance, joining the group commit) = ${(report.spendShareOfInterleavedHash * 100).toFixed(0)}% of the raw hash timed between its rounds. ` +
      `Answered after the durable commit: chain calls ${report.durableChainOverL402.toFixed(1)}x L402 calls.`,
    '',
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const index = process.argv.indexOf('--seconds');
  const report = await runPayCallBenchmark({ seconds: index >= 0 ? Number(process.argv[index + 1]) : 3, log: (line) => process.stderr.write(`${line}\n`) });
  process.stdout.write(payCallMarkdown(report));
}
