// The `sluice` executable as a person or a script runs it: `node packages/server/dist/cli/main.js`
// in a child process. `decode` is checked on examples from BOLT #11 ("Examples" section of
// ../shared/reference/bolts/11-payment-encoding.md from the repository root, read at test time);
// `start` runs a real server (SQLite in a temp dir, devnet with fake money) that the client
// commands then talk to over a socket, and stops it with SIGTERM.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const MAIN = path.join(ROOT, 'packages/server/dist/cli/main.js');
const SPEC_PATH = path.join(ROOT, '../shared/reference/bolts/11-payment-encoding.md');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Only what a test sets: an inherited SLUICE_API_KEY or PORT must not leak into a run. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  return { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? os.tmpdir(), ...extra };
}

function runCli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: cleanEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString('utf8')));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The invoice of the BOLT 11 example whose title starts with `title`. */
function specInvoice(title: string): string {
  const lines = fs.readFileSync(SPEC_PATH, 'utf8').split('\n');
  const at = lines.findIndex((line) => line.startsWith('> ### ' + title));
  if (at < 0) throw new Error(`no BOLT 11 example titled ${JSON.stringify(title)}`);
  const invoice = lines[at + 1]?.replace(/^> /, '').trim() ?? '';
  if (!/^ln/.test(invoice)) throw new Error(`the example ${JSON.stringify(title)} has no invoice on its next line`);
  return invoice;
}

beforeAll(async () => {
  // tsc -b rebuilds only what changed: cheap when dist is fresh.
  await promisify(execFile)('npx', ['tsc', '-b', 'packages/client', 'packages/server'], { cwd: ROOT });
}, 180_000);

describe('the Node.js flags the server runs with', () => {
  it('are the same in npm start, the sluice command and src/cli/node-flags.ts, and the command runs with them', async () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${SERVER_NODE_FLAGS.join(' ')} packages/server/dist/cli/main.js start`);
    const shebang = fs.readFileSync(path.join(ROOT, 'packages/server/bin/sluice.js'), 'utf8').split('\n')[0];
    expect(shebang).toBe(`#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(' ')}`);
    // The shebang as the kernel runs it (env -S splits the flags), on a command that exits at once.
    const run = await promisify(execFile)(path.join(ROOT, 'packages/server/bin/sluice.js'), ['--help'], { env: cleanEnv({}) }).catch((error: { stdout: string; stderr: string; code: number }) => error);
    expect(`${run.stdout}${run.stderr}`).toMatch(/decode/);
  });
});

describe('sluice decode (local, BOLT 11 examples)', () => {
  const rows = [
    {
      title: 'Please send $3 for a cup of coffee to the same peer, within one minute',
      expected: { amountMsat: '250000000', description: '1 cup coffee', expiryS: 60, network: 'mainnet' },
      human: ['250,000,000 msat (250,000 sat)', '"1 cup coffee"', '(60 s after creation) EXPIRED'],
    },
    {
      title: 'Please make a donation of any amount',
      expected: { amountMsat: null, description: 'Please consider supporting this project', expiryS: 3600, network: 'mainnet' },
      human: ['any (the payer chooses)'],
    },
  ];
  for (const row of rows) {
    it(row.title, async () => {
      const invoice = specInvoice(row.title);
      const json = await runCli(['decode', invoice, '--json']);
      expect(json.stderr).toBe('');
      expect(json.code).toBe(0);
      const decoded = JSON.parse(json.stdout);
      expect(decoded).toMatchObject({
        ...row.expected,
        paymentHash: '0001020304050607080900010203040506070809000102030405060708090102',
        payeePubkey: '03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad',
      });

      const human = await runCli(['decode', invoice]);
      expect(human.code).toBe(0);
      for (const text of [...row.human, '0001020304050607080900010203040506070809000102030405060708090102']) expect(human.stdout).toContain(text);
    });
  }

  it('refuses a broken invoice with invoice_invalid and exit 1', async () => {
    const invoice = specInvoice('Please send $3 for a cup of coffee');
    const broken = invoice.slice(0, -1) + (invoice.endsWith('q') ? 'p' : 'q');
    const run = await runCli(['decode', broken]);
    expect(run.code).toBe(1);
    expect(run.stdout).toBe('');
    expect(run.stderr).toMatch(/^error invoice_invalid: .*BadChecksum/);
  });

  it('exits 2 on bad usage', async () => {
    const run = await runCli(['decode']);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("missing required argument 'bolt11'");
  });
});

describe('sluice start with a bad configuration', () => {
  it('prints each error and exits 2', async () => {
    const run = await runCli(['start'], { PORT: 'eighty', SLUICE_LIGHTNING: 'cln', SLUICE_DATA_DIR: path.join(os.tmpdir(), 'sluice-never-created') });
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('PORT must be an integer');
    expect(run.stderr).toContain('SLUICE_LIGHTNING must be one of');
  });
});

describe('sluice start, then the client commands against it', () => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-cli-'));
  const serverEnv = { SLUICE_DATA_DIR: dataDir, PORT: '0', LOG_LEVEL: 'warn', SLUICE_DEVNET_SEED: 'cli-tests' };
  let server: ChildProcess | null = null;
  let serverStderr = '';
  let url = '';
  let banner = '';
  let adminKey = '';
  let appKey = '';

  /** Spawns `sluice start` and resolves with its banner once it is listening. */
  function start(): Promise<{ child: ChildProcess; banner: string; url: string }> {
    const child = spawn(process.execPath, [MAIN, 'start'], { env: cleanEnv(serverEnv), stdio: ['ignore', 'pipe', 'pipe'] });
    serverStderr = '';
    child.stderr?.on('data', (chunk: Buffer) => (serverStderr += chunk.toString('utf8')));
    return new Promise((resolve, reject) => {
      let stdout = '';
      child.on('exit', (code) => reject(new Error(`sluice start exited with ${code}: ${serverStderr}`)));
      child.stdout?.on('data', (chunk: Buffer) => {
        stdout += chunk.toString('utf8');
        const listening = /Sluice \S+ listening on (http:\/\/\S+)\n/.exec(stdout);
        const complete = /data dir .*\n/.test(stdout) && (!stdout.includes('admin key') || /shown again.*\n/.test(stdout));
        if (listening && complete) resolve({ child, banner: stdout.slice(listening.index), url: listening[1] as string });
      });
    });
  }

  function stop(child: ChildProcess): Promise<number | null> {
    return new Promise((resolve) => {
      child.removeAllListeners('exit');
      child.on('exit', (code) => resolve(code));
      child.kill('SIGTERM');
    });
  }

  const client = (args: string[], env: Record<string, string> = {}) => runCli(['--url', url, ...args], env);

  beforeAll(async () => {
    const started = await start();
    server = started.child;
    url = started.url;
    banner = started.banner;
  });

  afterAll(async () => {
    if (server && server.exitCode === null) await stop(server);
    fs.rmSync(dataDir, { recursive: true, force: true });
  });

  it('prints a banner with the backend, the store, the data dir and the new admin key once', async () => {
    expect(banner).toContain('devnet (regtest) — FAKE MONEY');
    expect(banner).toContain(`sqlite (${path.join(dataDir, 'sluice.sqlite')})`);
    expect(banner).toContain(`data dir   ${dataDir}`);
    expect(banner).toContain(`dashboard  ${url}/dashboard/ (merchants), ${url}/me/ (customers)`);
    expect(banner).toContain(`demo game  ${url}/demo/`);
    const key = /admin key +(\S+)\n +save this now, it will not be shown again/.exec(banner);
    expect(key).not.toBeNull();
    adminKey = (key as RegExpExecArray)[1] as string;
    expect(adminKey).toMatch(/^sa_/);

    const health = await fetch(`${url}/v1/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok', lightning: { backend: 'devnet', fake_money: true }, store: 'sqlite' });
  });

  it('apps create and apps list (admin key from SLUICE_ADMIN_KEY)', async () => {
    const created = await client(['apps', 'create', '--name', 'cli app', '--json'], { SLUICE_ADMIN_KEY: adminKey });
    expect(created.code).toBe(0);
    const app = JSON.parse(created.stdout);
    expect(app).toMatchObject({ name: 'cli app' });
    expect(app.api_key).toMatch(/^sk_/);
    appKey = app.api_key;

    const listed = await client(['apps', 'list'], { SLUICE_ADMIN_KEY: adminKey });
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(app.id);
    expect(listed.stdout).toContain('cli app');

    const human = await client(['--key', adminKey, 'apps', 'create']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('save this key now, it will not be shown again');
  });

  it('invoice, devnet pay, then status --json shows the balance', async () => {
    const invoiced = await client(['invoice', '21000', '--description', 'coffee', '--expiry', '600', '--json'], { SLUICE_API_KEY: appKey });
    expect(invoiced.code).toBe(0);
    const invoice = JSON.parse(invoiced.stdout);
    expect(invoice).toMatchObject({ amount_msat: '21000', description: 'coffee', status: 'open' });

    const paid = await client(['devnet', 'pay', invoice.payment_request], { SLUICE_API_KEY: appKey });
    expect(paid.code).toBe(0);
    expect(paid.stdout).toContain('paid by devnet wallet alice (fake money)');
    expect(paid.stdout).toContain(invoice.payment_hash);

    const status = await client(['status', '--json'], { SLUICE_API_KEY: appKey });
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toEqual({
      health: { status: 'ok', lightning: { backend: 'devnet', network: 'regtest', pubkey: expect.any(String), fake_money: true }, store: 'sqlite' },
      balance: { balance_msat: '21000', held_msat: '0', available_msat: '21000' },
    });

    const human = await client(['status'], { SLUICE_API_KEY: appKey });
    expect(human.stdout).toContain('21,000 msat (21 sat)');
    const noKey = await client(['status']);
    expect(noKey.code).toBe(0);
    expect(noKey.stdout).toContain('no app key');
  });

  it('pay prints its generated idempotency key, and a retry with it returns the same payment', async () => {
    const target = await client(['devnet', 'invoice', '5000', '--wallet', 'bob', '--json'], { SLUICE_API_KEY: appKey });
    expect(target.code).toBe(0);
    const { payment_request } = JSON.parse(target.stdout);

    const first = await client(['pay', payment_request, '--max-fee', '2000', '--json'], { SLUICE_API_KEY: appKey });
    expect(first.code).toBe(0);
    const key = /idempotency key: (\S+)/.exec(first.stderr);
    expect(key).not.toBeNull();
    const payment = JSON.parse(first.stdout);
    expect(payment).toMatchObject({ status: 'succeeded', amount_msat: '5000', max_fee_msat: '2000' });

    const retry = await client(['pay', payment_request, '--max-fee', '2000', '--idempotency-key', (key as RegExpExecArray)[1] as string, '--json'], { SLUICE_API_KEY: appKey });
    expect(retry.code).toBe(0);
    expect(retry.stderr).toBe('');
    expect(JSON.parse(retry.stdout).id).toBe(payment.id);

    const again = await client(['pay', payment_request], { SLUICE_API_KEY: appKey });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('error invoice_already_paid:');
  });

  it('errors print "error <code>: <message>" and exit 1 (2 for bad usage)', async () => {
    const rows: { args: string[]; env?: Record<string, string>; code: number; stderr: RegExp }[] = [
      { args: ['--key', 'sk_not-a-key', 'status'], code: 1, stderr: /^error invalid_api_key: / },
      { args: ['apps', 'list'], code: 1, stderr: /^error unauthorized: .*SLUICE_ADMIN_KEY/ },
      { args: ['apps', 'list'], env: { SLUICE_ADMIN_KEY: appKey }, code: 1, stderr: /^error forbidden: / },
      { args: ['invoice', '12.5'], env: { SLUICE_API_KEY: appKey }, code: 1, stderr: /^error invalid_amount: / },
      { args: ['invoice', '0'], env: { SLUICE_API_KEY: appKey }, code: 1, stderr: /^error invalid_amount: / },
      { args: ['apps', 'revoke', 'app_nope'], env: { SLUICE_ADMIN_KEY: adminKey }, code: 1, stderr: /^error app_not_found: / },
      { args: ['invoice'], env: { SLUICE_API_KEY: appKey }, code: 2, stderr: /missing required argument 'msat'/ },
    ];
    for (const row of rows) {
      const run = await client(row.args, row.env);
      expect({ args: row.args, code: run.code }).toEqual({ args: row.args, code: row.code });
      expect(run.stderr).toMatch(row.stderr);
    }
    const unreachable = await runCli(['--url', 'http://127.0.0.1:1', 'status']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(/^error network_error: /);
  });

  it('SIGTERM stops it gracefully with exit 0; a restart does not show the admin key again', async () => {
    const code = await stop(server as ChildProcess);
    expect(code).toBe(0);
    expect(serverStderr).toContain('stopped');

    const restarted = await start();
    server = restarted.child;
    expect(restarted.banner).not.toContain('admin key');
    const listed = await runCli(['--url', restarted.url, 'apps', 'list', '--json'], { SLUICE_ADMIN_KEY: adminKey });
    expect(JSON.parse(listed.stdout).apps.map((app: { name: string }) => app.name)).toContain('cli app');
    expect(await stop(server)).toBe(0);
  });
});
