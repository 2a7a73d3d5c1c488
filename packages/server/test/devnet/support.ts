/** Shared set-up for the devnet tests. */
import { createHash, randomBytes } from 'node:crypto';
import { createManualClock, type ManualClock } from '../../src/clock.js';
import { openDevnet, type Devnet, type DevnetOptions } from '../../src/lightning/devnet/index.js';
import { msat } from '../../src/money/msat.js';

export const FEE_LIMIT = msat(1_000_000);
export const START_MS = Date.UTC(2026, 0, 1);

export async function openTestDevnet(options: Partial<DevnetOptions> = {}): Promise<{ devnet: Devnet; clock: ManualClock }> {
  const clock = createManualClock(START_MS);
  const devnet = await openDevnet({ dataDir: null, clock, seed: 'devnet-tests', ...options });
  return { devnet, clock };
}

export function sha256Hex(hex: string): string {
  return createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
}

export function randomHex32(): string {
  return randomBytes(32).toString('hex');
}

/** Every node's local balance, by name. */
export function balances(devnet: Devnet): Record<string, bigint> {
  return Object.fromEntries(devnet.nodeNames().map((name) => [name, devnet.nodeBalanceMsat(name)]));
}
