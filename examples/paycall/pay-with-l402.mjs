// Pays three calls through the gateway with an existing L402 client, Alby's fetchWithL402:
// each call gets a 402 with an invoice and a macaroon, pays, and is sent again with
// `Authorization: L402 <macaroon>:<preimage>`. The devnet wallet `alice` pays (fake money).
import { fetchWithL402 } from '@getalby/lightning-tools/402/l402';

const sluiceUrl = process.env.SLUICE_URL ?? 'http://127.0.0.1:8402';
const gatewayUrl = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';
const key = process.env.SLUICE_ADMIN_KEY;
if (!key) throw new Error('set SLUICE_ADMIN_KEY to the key Sluice was started with');

async function sluice(method, path, body) {
  const response = await fetch(`${sluiceUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  return response.json();
}
// fetchWithL402's wallet interface: payInvoice({ invoice }) -> { preimage }.
const wallet = {
  payInvoice: async ({ invoice }) => sluice('POST', '/v1/devnet/pay', { payment_request: invoice, wallet: 'alice' }),
};
const aliceMsat = async () => BigInt((await sluice('GET', '/v1/devnet/wallets')).wallets.find((w) => w.name === 'alice').balance_msat);

const before = await aliceMsat();
for (let call = 1; call <= 3; call++) {
  const response = await fetchWithL402(`${gatewayUrl}/paid/joke`, {}, { wallet });
  const { joke } = await response.json();
  console.log(`call ${call}: HTTP ${response.status}, alice has paid ${before - (await aliceMsat())} msat so far  "${joke}"`);
}
