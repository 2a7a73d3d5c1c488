/**
 * The LightningBackend contract, run against the `lnd` backend talking over HTTPS to the
 * LND stand-in (checked against LND's REST description), which forwards to the devnet
 * node `sluice`; wallets `alice` (payer) and `bob` (payee) are devnet nodes.
 */
import { describeLightningBackendContract } from '../lightning/backend-contract.js';
import { openLndOverDevnet } from './support.js';

describeLightningBackendContract('lnd (REST stand-in over devnet)', async () => {
  const setup = await openLndOverDevnet('lnd-contract');
  return {
    backend: setup.lnd,
    payer: setup.devnet.backendFor('alice'),
    payee: setup.devnet.backendFor('bob'),
    passTime: async (ms) => setup.clock.advanceMs(ms),
    teardown: () => setup.close(),
  };
});
