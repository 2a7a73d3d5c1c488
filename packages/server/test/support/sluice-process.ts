/**
 * Sluice as a real process: `node <SERVER_NODE_FLAGS> packages/server/dist/cli/main.js start`, over a real
 * socket, so tests can kill it (SIGKILL) and start it again on the same data dir.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { SERVER_NODE_FLAGS } from '../../src/cli/node-flags.js';

export const CLI = path.resolve(__dirname, '../../dist/cli/main.js');

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface SluiceProcess {
  url: string;
  child: ChildProcess;
  output(): string;
  /** Resolves with the exit code and signal once the process has ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  request(method: string, route: string, key: string | null, body?: unknown): Promise<{ status: number; body: any }>;
  stop(): Promise<void>;
}

export async function startSluiceProcess(env: Record<string, string>, options: { port?: number } = {}): Promise<SluiceProcess> {
  const port = options.port ?? (await freePort());
  const child = spawn(process.execPath, [...SERVER_NODE_FLAGS, CLI, 'start'], {
    env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (chunk) => (output += chunk));
  child.stderr?.on('data', (chunk) => (output += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const url = `http://127.0.0.1:${port}`;
  const request: SluiceProcess['request'] = async (method, route, key, body) => {
    const headers: Record<string, string> = {};
    if (key !== null) headers.authorization = `Bearer ${key}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const response = await fetch(url + route, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
    const text = await response.text();
    return { status: response.status, body: text ? JSON.parse(text) : null };
  };
  let alive = true;
  void exited.then(() => (alive = false));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (!alive) throw new Error(`sluice exited before serving:\n${output}`);
    try {
      if ((await request('GET', '/v1/health', null)).status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`sluice did not serve /v1/health within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return {
    url,
    child,
    output: () => output,
    exited,
    request,
    async stop() {
      if (alive) child.kill('SIGTERM');
      await exited;
    },
  };
}
