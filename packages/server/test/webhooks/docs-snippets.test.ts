// The verification snippets of docs/webhooks.md, copied out of the page and run as they
// are (Node through a temporary module, Python through python3) against a real signed
// delivery from a real Sluice on the devnet, on the real clock, so the replay window is
// the one a reader's receiver would apply.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestSluice, type TestSluice } from '../support/sluice.js';
import { startReceiver, type Receiver } from './support.js';

const page = fs.readFileSync(path.resolve(__dirname, '../../../../docs/webhooks.md'), 'utf8');

function snippetAfter(marker: string, language: string): string {
  const from = page.indexOf(marker);
  if (from === -1) throw new Error(`docs/webhooks.md has no "${marker}"`);
  const open = page.indexOf('```' + language + '\n', from);
  const close = page.indexOf('\n```', open + 4);
  return page.slice(open + language.length + 4, close + 1);
}

describe('docs/webhooks.md verification snippets', () => {
  let t: TestSluice;
  let receiver: Receiver;
  let delivery: { body: string; header: string; secret: string };

  beforeAll(async () => {
    t = await startTestSluice();
    receiver = await startReceiver(200);
    const app = await t.createApp('docs');
    const endpoint = await t.call('POST', '/v1/webhooks', { key: app.apiKey, body: { url: receiver.url, event_types: ['invoice.paid'] } });
    const invoice = await t.call('POST', '/v1/invoices', { key: app.apiKey, body: { amount_msat: '123000', description: 'docs' } });
    await t.call('POST', '/v1/devnet/pay', { key: app.apiKey, body: { payment_request: invoice.body.payment_request, wallet: 'alice' } });
    const [request] = await receiver.waitFor(1);
    delivery = { body: request!.body, header: request!.headers['sluice-signature'] as string, secret: endpoint.body.secret };
  });
  afterAll(async () => {
    await t?.close();
    await receiver?.close();
  });

  it('the Node snippet accepts the delivery and refuses a tampered one', async () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-docs-')), 'verify.mjs');
    fs.writeFileSync(file, snippetAfter('Node (no dependency):', 'js'));
    const { verifySluiceWebhook } = (await import(pathToFileURL(file).href)) as { verifySluiceWebhook: (...args: unknown[]) => boolean };
    expect(verifySluiceWebhook(delivery.secret, delivery.header, Buffer.from(delivery.body))).toBe(true);
    expect(verifySluiceWebhook(delivery.secret, delivery.header, Buffer.from(delivery.body.replace('123000', '123001')))).toBe(false);
    expect(verifySluiceWebhook('whsec_other', delivery.header, Buffer.from(delivery.body))).toBe(false);
    expect(verifySluiceWebhook(delivery.secret, delivery.header, Buffer.from(delivery.body), 300, Math.floor(Date.now() / 1000) + 600)).toBe(false);
  });

  it('the Python snippet accepts the delivery and refuses a tampered one', () => {
    const code = snippetAfter('Python (standard library):', 'python') + `
import json, sys
given = json.load(sys.stdin)
print(json.dumps([
    verify_sluice_webhook(given["secret"], given["header"], given["body"].encode()),
    verify_sluice_webhook(given["secret"], given["header"], given["body"].replace("123000", "123001").encode()),
]))
`;
    const output = execFileSync('python3', ['-c', code], { input: JSON.stringify(delivery), encoding: 'utf8' });
    expect(JSON.parse(output)).toEqual([true, false]);
  });
});
