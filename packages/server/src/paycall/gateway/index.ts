/**
 * `sluice gateway`: the gateway wired to the Sluice that runs beside it in one process.
 * It finds (or creates, on first start) the app that is paid, sets that app's chain step
 * price from the config, builds the gate from Sluice's real schemes (hash-chain tokens
 * first, then L402) and starts the proxy.
 */
import type { Logger } from 'pino';
import type { Sluice } from '../../app.js';
import { createChainScheme } from '../chain/index.js';
import { createPayCallGate, type CombinedPayCallGate } from '../gate-combined.js';
import type { GateRequest } from '../gate.js';
import { PAYCALL_API_PREFIX, createGateway, type Gateway } from './server.js';
import type { GatewayConfig } from './config.js';

export { loadGatewayConfig, parseGatewayConfig, validateGatewayConfig, type GatewayConfig, type GatewayConfigResult } from './config.js';
export { createGateway, PAYCALL_API_PREFIX, type Gateway, type GatewayDeps, type InProcessApi } from './server.js';

/** Where the id of the gateway's own app is remembered (records meta). */
export const GATEWAY_APP_META = 'gateway_app_id';

/** A start-up problem to show the user as it is (an unknown app id, a revoked app). */
export class GatewayStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GatewayStartError';
  }
}

export interface StartedGateway {
  gateway: Gateway;
  url: string;
  appId: string;
  gate: CombinedPayCallGate;
  /** The API key of the gateway app when this start created it (print once); else null. */
  createdAppKey: string | null;
}

async function resolveAppId(sluice: Sluice, config: GatewayConfig): Promise<{ appId: string; createdAppKey: string | null }> {
  if (config.appId !== null) {
    const app = await sluice.apps.getApp(config.appId);
    if (app === null) throw new GatewayStartError(`app_id ${config.appId} is not an app of this Sluice (see: sluice apps list)`);
    if (app.revokedAt !== null) throw new GatewayStartError(`app_id ${config.appId} has been revoked`);
    return { appId: app.id, createdAppKey: null };
  }
  const remembered = await sluice.records.getMeta(GATEWAY_APP_META);
  if (remembered !== null) {
    const app = await sluice.apps.getApp(remembered);
    if (app === null || app.revokedAt !== null) {
      throw new GatewayStartError(`the gateway's app ${remembered} is gone or revoked; set app_id in the config to the app to be paid`);
    }
    return { appId: app.id, createdAppKey: null };
  }
  const created = await sluice.apps.createApp('gateway');
  await sluice.records.setMeta(GATEWAY_APP_META, created.app.id);
  return { appId: created.app.id, createdAppKey: created.apiKey };
}

function firstHeader(request: GateRequest, name: string): string | undefined {
  const value = request.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The absolute URL of the chain purchase route as the client reaches it: through the gateway. */
function buyUrlFor(config: GatewayConfig): (request: GateRequest) => string {
  const path = PAYCALL_API_PREFIX + 'chains';
  if (config.publicUrl !== null) {
    const fixed = config.publicUrl + path;
    return () => fixed;
  }
  return (request) => {
    const forwardedHost = config.trustForwardedHeaders ? firstHeader(request, 'x-forwarded-host') : undefined;
    const forwardedProto = config.trustForwardedHeaders ? firstHeader(request, 'x-forwarded-proto') : undefined;
    const host = forwardedHost ?? firstHeader(request, 'host') ?? `${config.listen.host}:${config.listen.port}`;
    return `${forwardedProto === 'https' ? 'https' : 'http'}://${host}${path}`;
  };
}

/**
 * Starts the gateway beside a Sluice in the same process. The `/v1/paycall/*` routes are
 * handed to that Sluice's API in process, as from the client's address.
 */
export async function startGatewayBeside(sluice: Sluice, config: GatewayConfig, options: { logger: Logger }): Promise<StartedGateway> {
  const { appId, createdAppKey } = await resolveAppId(sluice, config);
  if (config.chainStepMsat !== null) sluice.chains.setStepMsat(appId, config.chainStepMsat);
  const chain = createChainScheme(sluice.chains, { buyUrl: buyUrlFor(config) });
  const gate = createPayCallGate([chain, sluice.l402.scheme], {
    onSchemeError: (scheme, error) => options.logger.error({ scheme, err: error }, 'payment scheme failed'),
  });
  const gateway = await createGateway({
    config,
    gate,
    appId,
    logger: options.logger,
    // In process, so the API sees each client's address (its per-address rate limit).
    paycallApi: sluice.http,
    healthDetails: () => ({ lightning: { backend: sluice.nodeInfo.backend, network: sluice.nodeInfo.network }, app_id: appId }),
  });
  const url = await gateway.listen();
  return { gateway, url, appId, gate, createdAppKey };
}
