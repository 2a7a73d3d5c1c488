// docs/protocol/*.schema.json are the server's own message schemas (src/streams/ws-messages.ts)
// written out: this test fails when they drift, and rewrites them when run with
// UPDATE_PROTOCOL_SCHEMAS=1. It also checks that every schema compiles in ajv (strict
// mode, an implementation independent of the server's), that docs/protocol.md documents
// every message type, and that every JSON line of the worked example in docs/protocol.md
// is valid against the schema of its message.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors/codes.js';
import { CLIENT_MESSAGES, protocolSchemas, SERVER_REPLIES, STREAM_EVENTS } from '../../src/streams/ws-messages.js';
import { checkMessage, PROTOCOL_DIR, protocolValidators } from './ws-support.js';

const DRAFT = 'http://json-schema.org/draft-07/schema#';
const expectedFiles = () => Object.fromEntries(Object.entries(protocolSchemas()).map(([name, schema]) => [
  `${name}.schema.json`, `${JSON.stringify({ $schema: DRAFT, ...schema }, null, 2)}\n`,
]));

if (process.env.UPDATE_PROTOCOL_SCHEMAS === '1') {
  fs.mkdirSync(PROTOCOL_DIR, { recursive: true });
  for (const file of fs.readdirSync(PROTOCOL_DIR)) if (file.endsWith('.schema.json')) fs.rmSync(path.join(PROTOCOL_DIR, file));
  for (const [file, text] of Object.entries(expectedFiles())) fs.writeFileSync(path.join(PROTOCOL_DIR, file), text);
}

const protocolDoc = fs.readFileSync(path.resolve(PROTOCOL_DIR, '../protocol.md'), 'utf8');

describe('docs/protocol schemas', () => {
  it('are exactly the schemas the server validates with (UPDATE_PROTOCOL_SCHEMAS=1 rewrites them)', () => {
    const expected = expectedFiles();
    const present = fs.readdirSync(PROTOCOL_DIR).filter((file) => file.endsWith('.schema.json')).sort();
    expect(present).toEqual(Object.keys(expected).sort());
    for (const [file, text] of Object.entries(expected)) expect(fs.readFileSync(path.join(PROTOCOL_DIR, file), 'utf8'), file).toBe(text);
  });

  it('compile in ajv strict mode: one per client message, one ok reply per request, error and event', () => {
    const names = [...protocolValidators().keys()];
    expect(names.length).toBe(Object.keys(CLIENT_MESSAGES).length * 2 + 2);
    expect(Object.keys(SERVER_REPLIES)).toEqual(Object.keys(CLIENT_MESSAGES));
  });

  it('error replies allow exactly the codes of the registry', () => {
    for (const code of Object.keys(ERROR_CODES)) expect(checkMessage('server', { type: 'error', id: '1', error: { code, message: 'm' } })).toBeNull();
    expect(checkMessage('server', { type: 'error', id: '1', error: { code: 'no_such_code', message: 'm' } })).not.toBeNull();
  });

  it('refuse what the protocol forbids (table)', () => {
    const rows: { description: string; message: unknown; valid: boolean }[] = [
      { description: 'charge by event', message: { type: 'charge', id: '7', stream_id: 'st_1', event: 'hit', ref: 'r1' }, valid: true },
      { description: 'amount as a number', message: { type: 'charge', id: '7', stream_id: 'st_1', amount_msat: 1000, ref: 'r1' }, valid: false },
      { description: 'amount with a leading zero', message: { type: 'charge', id: '7', stream_id: 'st_1', amount_msat: '01', ref: 'r1' }, valid: false },
      { description: 'ref with a space', message: { type: 'charge', id: '7', stream_id: 'st_1', amount_msat: '1', ref: 'a b' }, valid: false },
      { description: 'unknown field', message: { type: 'ping', id: '7', extra: true }, valid: false },
      { description: 'id missing', message: { type: 'ping' }, valid: false },
      { description: 'numeric id', message: { type: 'ping', id: 7 }, valid: false },
      { description: 'negative after_seq', message: { type: 'subscribe', id: '7', after_seq: -1 }, valid: false },
      { description: 'meter action', message: { type: 'meter', id: '7', action: 'rewind' }, valid: false },
    ];
    for (const row of rows) expect(checkMessage('client', row.message) === null, row.description).toBe(row.valid);
  });
});

describe('docs/protocol.md', () => {
  it('documents every message type, event type, close code and WebSocket error code', () => {
    for (const type of Object.keys(CLIENT_MESSAGES)) expect(protocolDoc, type).toContain(`\`${type}\``);
    for (const event of STREAM_EVENTS) expect(protocolDoc, event.properties.type.const).toContain(`\`${event.properties.type.const}\``);
    for (const code of ['message_too_large', 'unknown_type', 'unauthorized', 'invalid_api_key', 'overloaded', 'stream_closed', 'stream_limit_exceeded']) {
      expect(protocolDoc, code).toContain(`\`${code}\``);
    }
    for (const code of ['1001', '1009', '4001', '4002', '4008', '4500']) expect(protocolDoc, code).toContain(`\`${code}\``);
  });

  it('has a worked example whose every line is a valid message', () => {
    // Lines of the example are "C: {...}" (client to server) and "S: {...}" (server to client).
    const lines = [...protocolDoc.matchAll(/^([CS]): (\{.*\})$/gm)];
    expect(lines.length).toBeGreaterThan(30);
    const requestTypes = new Map<string, string>();
    const problems: string[] = [];
    for (const [, direction, text] of lines) {
      const message = JSON.parse(text as string);
      if (direction === 'C') requestTypes.set(message.id, message.type);
      const problem = checkMessage(direction === 'C' ? 'client' : 'server', message, requestTypes.get(message.id));
      if (problem) problems.push(problem);
    }
    expect(problems).toEqual([]);
    const kinds = new Set(lines.map(([, , text]) => {
      const message = JSON.parse(text as string);
      return message.type === 'event' ? `event.${message.event.type}` : message.type;
    }));
    for (const kind of ['auth', 'stream.create', 'subscribe', 'charge', 'reward', 'close', 'error', 'event.invoice', 'event.funded', 'event.charged', 'event.balance', 'event.closed', 'event.settled']) {
      expect([...kinds], kind).toContain(kind);
    }
  });
});
