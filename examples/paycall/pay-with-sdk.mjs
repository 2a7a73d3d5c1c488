// Pays three calls through the gateway with the SDK's paying fetch: one Lightning payment
// buys a hash chain, then each call spends 5 links (no Lightning round trip per call).
// The devnet wallet `alice` pays (fake money). Needs SLUICE_ADMIN_KEY (any Sluice key works).
import { createPayingFetch, devnetWallet } from '@sluice/client';

const sluiceUrl = process.env.SLUICE_URL ?? 'http://127.0.0.1:8402';
const gatewayUrl = process.env.GATEWAY_URL ?? 'http://127.0.0.1:8080';
const key = process.env.SLUICE_ADMIN_KEY;
if (!key) throw new Error('set SLUICE_ADMIN_KEY to the key Sluice was started with');

const wallet = devnetWallet({ baseUrl: sluiceUrl, key, wallet: 'alice' });
const paidFetch = createPayingFetch({ wallet, budgetMsat: 50_000n, chain: { steps: 20 } });

for (let call = 1; call <= 3; call++) {
  const response = await paidFetch(`${gatewayUrl}/paid/joke`);
  const { joke } = await response.json();
  console.log(`call ${call}: HTTP ${response.status}, balance ${response.headers.get('sluice-chain-balance')}  "${joke}"`);
}
const spent = paidFetch.spent();
console.log(`paid ${spent.paidMsat} msat for one chain, used ${spent.usedMsat} msat in ${spent.paidCalls} calls`);
const [refund] = await paidFetch.refund();
console.log(`refunded the unused ${refund?.amountMsat ?? 0n} msat to alice (${refund?.status ?? 'nothing to refund'})`);
