/**
 * `sluice gateway --config FILE` as a real child process (the built CLI): Sluice's API on
 * PORT and the proxy on the config's address, in front of an upstream in this process.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, freePort } from '../../support/sluice-process.js';

interface Run {
  child: ReturnType<typeof spawn>;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function runCli(args: string[], env: Record<string, string>): Run {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { child, output: () => output, exited };
}

async function waitFor(url: string, run: Run): Promise<void> {
  const deadline = Date.now() + 30_000;
  let done = false;
  void run.exited.then(() => (done = true));
  for (;;) {
    if (done) throw new Error(`sluice gateway exited:\n${run.output()}`);
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`no answer from ${url}:\n${run.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('sluice gateway (child process)', () => {
  let upstream: http.Server;
  let upstreamUrl: string;
  let dir: string;
  beforeAll(async () => {
    upstream = http.createServer((request, response) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ path: request.url })));
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-gateway-cli-'));
  });
  afterAll(async () => {
    upstream.closeAllConnections();
    await new Promise<void>((resolve) => upstream.close(() => resolve()));
  });

  it('runs Sluice and the proxy from a YAML config, prices routes, and stops on SIGTERM', async () => {
    const [apiPort, gatewayPort] = [await freePort(), await freePort()];
    const config = path.join(dir, 'gateway.yaml');
    fs.writeFileSync(config, [
      'listen:', '  host: 127.0.0.1', `  port: ${gatewayPort}`, `upstream: ${upstreamUrl}`, 'chain_step_msat: "1000"', 'routes:',
      '  - path: /paid/*', '    price_msat: "5000"', '  - path: /free/*', '    price_msat: "0"', '',
    ].join('\n'));
    const run = runCli(['gateway', '--config', config], { PORT: String(apiPort), SLUICE_DATA_DIR: path.join(dir, 'data'), SLUICE_DEVNET_SEED: 'gateway-cli' });
    const gateway = `http://127.0.0.1:${gatewayPort}`;
    try {
      await waitFor(`${gateway}/_sluice/health`, run);
      await waitFor(`http://127.0.0.1:${apiPort}/v1/health`, run);
      const banner = run.output();
      expect(banner).toContain(`Gateway listening on ${gateway} -> ${upstreamUrl}`);
      expect(banner).toMatch(/app api key\s+sk_/);
      expect(banner).toMatch(/routes\s+\* \/paid\/\* 5000 msat/);

      const free = await fetch(`${gateway}/free/x?y=1`);
      expect(free.status).toBe(200);
      expect(await free.json()).toEqual({ path: '/free/x?y=1' });
      const paid = await fetch(`${gateway}/paid/x`);
      expect(paid.status).toBe(402);
      expect(paid.headers.get('sluice-chain-offer')).toMatch(new RegExp(`^buy="${gateway}/v1/paycall/chains", app="app_[^"]+", step_msat="1000", steps_per_call="5"$`));
      expect(paid.headers.get('www-authenticate')).toMatch(/^L402 /);
      expect(await paid.json()).toMatchObject({ error: { code: 'payment_required' }, price_msat: '5000' });
    } finally {
      run.child.kill('SIGTERM');
    }
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(run.output()).toContain('stopped');

    // The second start finds the app it created and prints no new key.
    const again = runCli(['gateway', '--config', config], { PORT: String(apiPort), SLUICE_DATA_DIR: path.join(dir, 'data'), SLUICE_DEVNET_SEED: 'gateway-cli' });
    try {
      await waitFor(`${gateway}/_sluice/health`, again);
      expect(again.output()).not.toContain('app api key');
    } finally {
      again.child.kill('SIGTERM');
    }
    expect((await again.exited).code).toBe(0);
  });

  it('exits 2 with every problem of a bad config listed, before starting anything', async () => {
    const config = path.join(dir, 'bad.json');
    fs.writeFileSync(config, JSON.stringify({ listen: { port: 'eighty' }, upstream: 'ftp://x', routes: [{ path: '/paid/*', price_msat: 1.5 }] }));
    const run = runCli(['gateway', '--config', config], { PORT: String(await freePort()), SLUICE_DATA_DIR: path.join(dir, 'bad-data') });
    expect((await run.exited).code).toBe(2);
    const output = run.output();
    expect(output).toContain(`error gateway_config_invalid: ${config} is not a valid gateway config`);
    expect(output).toContain('listen.port: must be an integer from 0 to 65535');
    expect(output).toContain('upstream: must start with http:// or https://');
    expect(output).toContain('routes[0].price_msat: must be a whole number of millisatoshis');
    expect(fs.existsSync(path.join(dir, 'bad-data'))).toBe(false);
  });

  it('exits 2 for a missing file, and 1 when the app_id is unknown', async () => {
    const missing = runCli(['gateway', '--config', path.join(dir, 'nope.yaml')], { PORT: String(await freePort()) });
    expect((await missing.exited).code).toBe(2);
    expect(missing.output()).toContain('no such file');

    const config = path.join(dir, 'unknown-app.json');
    fs.writeFileSync(config, JSON.stringify({ listen: { port: await freePort() }, upstream: upstreamUrl, app_id: 'app_nope', routes: [{ path: '/*', price_msat: '1' }] }));
    const run = runCli(['gateway', '--config', config], { PORT: String(await freePort()), SLUICE_DATA_DIR: path.join(dir, 'unknown-app-data') });
    expect((await run.exited).code).toBe(1);
    expect(run.output()).toContain('error gateway_start_failed: app_id app_nope is not an app of this Sluice');

    // The gateway's port taken: said as such, and Sluice is closed again.
    const blocker = http.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const takenPort = (blocker.address() as AddressInfo).port;
    const taken = path.join(dir, 'taken.json');
    fs.writeFileSync(taken, JSON.stringify({ listen: { port: takenPort }, upstream: upstreamUrl, routes: [{ path: '/*', price_msat: '0' }] }));
    const busy = runCli(['gateway', '--config', taken], { PORT: String(await freePort()), SLUICE_DATA_DIR: path.join(dir, 'taken-data') });
    expect((await busy.exited).code).toBe(1);
    expect(busy.output()).toContain(`error gateway_start_failed: the gateway's listen address 127.0.0.1:${takenPort} is already in use`);
    await new Promise<void>((resolve) => blocker.close(() => resolve()));
  });
});
