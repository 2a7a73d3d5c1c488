/** The LightningBackend contract, run against a devnet node (`sluice`) with wallets `alice` (payer) and `bob` (payee). */
import { createManualClock } from '../../src/clock.js';
import { openDevnet } from '../../src/lightning/devnet/index.js';
import { describeLightningBackendContract } from '../lightning/backend-contract.js';

describeLightningBackendContract('devnet', async () => {
  const clock = createManualClock(Date.UTC(2026, 0, 1));
  const devnet = await openDevnet({ dataDir: null, clock, seed: 'contract' });
  return {
    backend: devnet.backendFor('sluice'),
    payer: devnet.backendFor('alice'),
    payee: devnet.backendFor('bob'),
    passTime: async (ms) => clock.advanceMs(ms),
    teardown: () => devnet.close(),
  };
});
