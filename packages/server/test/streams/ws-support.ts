/**
 * A sluice.v1 test client over a real socket (the `ws` client), and the JSON Schemas of
 * docs/protocol/ compiled with ajv (an implementation independent of the server's
 * TypeBox validator). Every message the client sends with request() and every message it
 * receives is checked against the schema for its type; problems are collected in
 * `violations` for the test to assert empty (throwing inside a socket handler would only
 * crash the worker).
 */
import fs from 'node:fs';
import path from 'node:path';
import { Ajv, type ValidateFunction } from 'ajv';
import WebSocket from 'ws';

export const PROTOCOL_DIR = path.resolve(__dirname, '../../../../docs/protocol');

let compiled: Map<string, ValidateFunction> | null = null;

/** docs/protocol/<name>.schema.json, compiled once per worker. */
export function protocolValidators(): Map<string, ValidateFunction> {
  if (compiled) return compiled;
  const ajv = new Ajv({ strict: true, allErrors: true });
  compiled = new Map();
  for (const file of fs.readdirSync(PROTOCOL_DIR).filter((name) => name.endsWith('.schema.json')).sort()) {
    const schema = JSON.parse(fs.readFileSync(path.join(PROTOCOL_DIR, file), 'utf8'));
    compiled.set(file.replace(/\.schema\.json$/, ''), ajv.compile(schema));
  }
  return compiled;
}

/** Problems with one message, or null; `requestType` names the request an ok reply answers. */
export function checkMessage(direction: 'client' | 'server', message: any, requestType?: string): string | null {
  const validators = protocolValidators();
  const name = direction === 'client' ? `client.${message?.type}`
    : message?.type === 'ok' ? `server.ok.${requestType}`
      : `server.${message?.type}`;
  const validate = validators.get(name);
  if (!validate) return `no schema ${name} for ${JSON.stringify(message)}`;
  if (validate(message)) return null;
  return `${name}: ${JSON.stringify(validate.errors)} in ${JSON.stringify(message)}`;
}

export interface Reply {
  type: 'ok' | 'error';
  id: string | null;
  error?: { code: string; message: string };
  [field: string]: any;
}

export class TestClient {
  readonly ws: WebSocket;
  readonly received: any[] = [];
  readonly events: any[] = [];
  readonly violations: string[] = [];
  /** Error replies with id null (the message could not be read). */
  readonly anonymousErrors: Reply[] = [];
  closeInfo: { code: number; reason: string } | null = null;
  private readonly waiting = new Map<string, { type: string; resolve: (reply: Reply) => void }>();
  private readonly watchers: (() => void)[] = [];
  private nextId = 1;

  private constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data) => this.onMessage(String(data)));
    ws.on('close', (code, reason) => {
      this.closeInfo = { code, reason: reason.toString() };
      this.notify();
    });
    ws.on('error', () => {});
  }

  static async connect(url: string, options: { protocols?: string[]; headers?: Record<string, string> } = {}): Promise<TestClient> {
    const ws = new WebSocket(url, options.protocols ?? ['sluice.v1'], { headers: options.headers ?? {} });
    const client = new TestClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_request, response) => {
        let body = '';
        response.on('data', (chunk: Buffer) => (body += chunk));
        response.on('end', () => reject(Object.assign(new Error(`HTTP ${response.statusCode}`), { status: response.statusCode, body: JSON.parse(body) })));
      });
      ws.once('error', reject);
    });
    return client;
  }

  private onMessage(text: string): void {
    const message = JSON.parse(text);
    this.received.push(message);
    if (message.type === 'event') {
      const problem = checkMessage('server', message);
      if (problem) this.violations.push(problem);
      this.events.push(message.event);
    } else {
      const pending = message.id === null ? undefined : this.waiting.get(message.id);
      const problem = checkMessage('server', message, pending?.type);
      if (problem) this.violations.push(problem);
      if (message.id === null) this.anonymousErrors.push(message);
      if (pending) {
        this.waiting.delete(message.id);
        pending.resolve(message);
      } else if (message.id !== null) this.violations.push(`a reply to no request: ${text}`);
    }
    this.notify();
  }

  private notify(): void {
    for (const watcher of this.watchers.splice(0)) watcher();
  }

  /** Resolves when the predicate holds (checked after every message and on close); gives up after timeoutMs. */
  async until(predicate: () => boolean, what = 'condition', timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (this.closeInfo) throw new Error(`connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${what}`);
      if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`);
      await new Promise<void>((resolve) => {
        this.watchers.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }

  eventsOf(streamId: string, type?: string): any[] {
    return this.events.filter((event) => event.stream_id === streamId && (type === undefined || event.type === type));
  }

  /** Sends a request (checked against its schema) and resolves with its one reply. */
  request(type: string, fields: Record<string, unknown> = {}, id = String(this.nextId++)): Promise<Reply> {
    const message = { type, id, ...fields };
    const problem = checkMessage('client', message);
    if (problem) this.violations.push(`sent: ${problem}`);
    return this.requestUnchecked(message);
  }

  /** Sends anything with an id and waits for its reply (for malformed-input tests). */
  requestUnchecked(message: Record<string, unknown> & { id: string; type?: unknown }): Promise<Reply> {
    if (this.waiting.has(message.id)) throw new Error(`id ${message.id} is already waiting`);
    const reply = new Promise<Reply>((resolve) => this.waiting.set(message.id, { type: String(message.type), resolve }));
    this.ws.send(JSON.stringify(message));
    return reply;
  }

  /** Sends raw text; the next anonymous error (id null) answers it. */
  async sendRaw(data: string | Buffer, options: { binary?: boolean } = {}): Promise<Reply> {
    const before = this.anonymousErrors.length;
    this.ws.send(data, { binary: options.binary ?? false });
    await this.until(() => this.anonymousErrors.length > before, 'an error reply');
    return this.anonymousErrors[before] as Reply;
  }

  async ok(type: string, fields: Record<string, unknown> = {}): Promise<Reply> {
    const reply = await this.request(type, fields);
    if (reply.type !== 'ok') throw new Error(`${type} failed: ${JSON.stringify(reply.error)}`);
    return reply;
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000);
    });
  }
}
