/**
 * The README's pay-per-call walkthrough, run as a user runs it: the sample API, `sluice
 * gateway --config examples/paycall/gateway.yaml` (the built CLI) and the two example
 * clients as child processes. Only the ports differ (free ones, so tests can run in
 * parallel); the config is the example's with those ports substituted.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freePort } from '../support/sluice-process.js';

const ROOT = path.resolve(__dirname, '../../../..');
const EXAMPLES = path.join(ROOT, 'examples/paycall');
const ADMIN_KEY = 'sa_walkthrough-admin-key';

interface Child {
  child: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
}

function run(args: string[], env: Record<string, string>): Child {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, output: () => output, exited };
}

async function waitForOk(url: string, child: Child): Promise<void> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.child.exitCode !== null) throw new Error(`exited early:\n${child.output()}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no answer from ${url}:\n${child.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('README: pay per call through sluice gateway (examples/paycall)', () => {
  let dir: string;
  let upstream: Child;
  let gateway: Child;
  let env: Record<string, string>;

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-readme-paycall-'));
    const [apiPort, gatewayPort, upstreamPort] = [await freePort(), await freePort(), await freePort()];
    const config = fs
      .readFileSync(path.join(EXAMPLES, 'gateway.yaml'), 'utf8')
      .replace('port: 8080', `port: ${gatewayPort}`)
      .replace('http://127.0.0.1:3000', `http://127.0.0.1:${upstreamPort}`);
    expect(config).toContain(`port: ${gatewayPort}`);
    fs.writeFileSync(path.join(dir, 'gateway.yaml'), config);
    env = { SLUICE_ADMIN_KEY: ADMIN_KEY, SLUICE_URL: `http://127.0.0.1:${apiPort}`, GATEWAY_URL: `http://127.0.0.1:${gatewayPort}` };
    upstream = run([path.join(EXAMPLES, 'upstream.mjs')], { UPSTREAM_PORT: String(upstreamPort) });
    gateway = run([CLI, 'gateway', '--config', path.join(dir, 'gateway.yaml')], {
      PORT: String(apiPort), HOST: '127.0.0.1', SLUICE_DATA_DIR: path.join(dir, 'data'), SLUICE_ADMIN_KEY: ADMIN_KEY,
    });
    await waitForOk(`http://127.0.0.1:${upstreamPort}/free/hello`, upstream);
    await waitForOk(`${env.GATEWAY_URL}/_sluice/health`, gateway);
  }, 60_000);

  afterAll(async () => {
    for (const child of [gateway, upstream]) {
      if (child && child.child.exitCode === null) {
        child.child.kill('SIGTERM');
        await child.exited;
      }
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('serves the free route and answers the paid one with both challenges', async () => {
    expect(await (await fetch(`${env.GATEWAY_URL}/free/hello`)).json()).toEqual({ hello: 'world' });
    const unpaid = await fetch(`${env.GATEWAY_URL}/paid/joke`);
    expect(unpaid.status).toBe(402);
    expect(unpaid.headers.get('sluice-chain-offer')).toMatch(/step_msat="1000", steps_per_call="5"/);
    expect(unpaid.headers.get('www-authenticate')).toMatch(/^L402 version="0", token="/);
  });

  it('pays three calls with the SDK: the chain balance falls by 5 steps a call, the rest is refunded', async () => {
    const client = run([path.join(EXAMPLES, 'pay-with-sdk.mjs')], env);
    expect(await client.exited, client.output()).toBe(0);
    const lines = client.output().trim().split('\n');
    expect(lines[0]).toMatch(/^call 1: HTTP 200, balance steps=15; msat=15000; index=5 {2}"/);
    expect(lines[1]).toMatch(/^call 2: HTTP 200, balance steps=10; msat=10000; index=10 {2}"/);
    expect(lines[2]).toMatch(/^call 3: HTTP 200, balance steps=5; msat=5000; index=15 {2}"/);
    expect(lines[3]).toBe('paid 20000 msat for one chain, used 15000 msat in 3 calls');
    expect(lines[4]).toBe('refunded the unused 5000 msat to alice (succeeded)');
  }, 60_000);

  it('pays three calls with fetchWithL402: alice pays 5 sat plus the same routing fee per call', async () => {
    const client = run([path.join(EXAMPLES, 'pay-with-l402.mjs')], env);
    expect(await client.exited, client.output()).toBe(0);
    const paid = [...client.output().matchAll(/^call (\d): HTTP 200, alice has paid (\d+) msat so far/gm)].map((match) => BigInt(match[2] as string));
    expect(paid).toHaveLength(3);
    const perCall = paid[0] as bigint;
    expect(perCall >= 5000n).toBe(true);
    expect(paid).toEqual([perCall, 2n * perCall, 3n * perCall]);
  }, 60_000);
});
