// A real process for the SIGKILL test: a Sluice (settings from the environment, devnet,
// SQLite in SLUICE_DATA_DIR) and a paid API in front of the `chain` scheme (2,000 msat a
// call). Prints one JSON line {"sluice","api"} once both listen. Run with `node --import tsx`.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createSluice } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { createLogger } from '../../../src/logger.js';
import { msat } from '../../../src/money/msat.js';
import { createChainScheme } from '../../../src/paycall/chain/index.js';

const loaded = loadConfig(process.env);
if (!loaded.ok) throw new Error(loaded.errors.join('; '));
const sluice = await createSluice(loaded.config, { logger: createLogger('warn') });
const sluiceUrl = (await sluice.listen()).replace('[::1]', '127.0.0.1');
const appId = process.env.CRASH_APP_ID ?? '';
const scheme = createChainScheme(sluice.chains, { buyUrl: `${sluiceUrl}/v1/paycall/chains` });
const api = http.createServer((request, response) => {
  const gateRequest = { method: request.method ?? 'GET', path: request.url ?? '/', headers: request.headers };
  const appFromPath = /^\/([^/]+)\//.exec(gateRequest.path)?.[1] ?? appId;
  void scheme.authorize(gateRequest, { priceMsat: msat(2000n), appId: appFromPath, service: 'crash' }).then((outcome) => {
    if (outcome.kind === 'refused') {
      response.writeHead(outcome.status, { 'content-type': 'application/json', ...outcome.responseHeaders });
      response.end(JSON.stringify({ error: { code: outcome.code } }));
      return;
    }
    response.writeHead(200, { 'content-type': 'application/json', ...outcome.responseHeaders });
    response.end('{"ok":true}');
  });
});
await new Promise<void>((resolve) => api.listen(Number(process.env.CRASH_API_PORT ?? 0), '127.0.0.1', resolve));
process.stdout.write(`${JSON.stringify({ sluice: sluiceUrl, api: `http://127.0.0.1:${(api.address() as AddressInfo).port}` })}\n`);
