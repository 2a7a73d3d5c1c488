/**
 * `sluice gateway --config FILE`: Sluice exactly as `sluice start` runs it (its API on
 * PORT, the same settings from the environment, the devnet included), plus the
 * pay-per-call reverse proxy on the config's listen address. The config file is checked
 * before anything starts: a bad file exits 2 with every problem listed.
 */
import { formatMsat } from '../money/msat.js';
import { describeRule } from '../paycall/route-prices.js';
import { loadGatewayConfig } from '../paycall/gateway/config.js';
import { formatRows } from './format.js';
import { EXIT } from './io.js';
import { runStart, type StartDeps } from './start.js';

export async function runGateway(deps: StartDeps, configFile: string): Promise<void> {
  const { io } = deps;
  const loaded = loadGatewayConfig(configFile);
  if (!loaded.ok) {
    io.stderr(`error gateway_config_invalid: ${configFile} is not a valid gateway config (see docs/gateway.md):\n`);
    for (const message of loaded.errors) io.stderr(`  - ${message}\n`);
    deps.exit(EXIT.usage);
    return;
  }
  const config = loaded.config;
  // Imported here, as start.ts imports the server: client commands do not load it.
  const { startGatewayBeside } = await import('../paycall/gateway/index.js');
  const { createLogger } = await import('../logger.js');

  await runStart(deps, {
    failureCode: 'gateway_start_failed',
    async attach(sluice) {
      const logger = createLogger(sluice.config.logLevel);
      let started: Awaited<ReturnType<typeof startGatewayBeside>>;
      try {
        started = await startGatewayBeside(sluice, config, { logger });
      } catch (error) {
        const code = (error as { code?: unknown }).code;
        const where = `${config.listen.host}:${config.listen.port}`;
        if (code === 'EADDRINUSE') throw new Error(`the gateway's listen address ${where} is already in use (change listen.port in ${configFile})`);
        if (code === 'EACCES') throw new Error(`no permission to listen on ${where} (listen in ${configFile})`);
        throw error;
      }
      const stepMsat = sluice.chains.stepMsatFor(started.appId);
      const banner =
        `Gateway listening on ${started.url} -> ${config.upstreamOrigin}${config.upstreamBasePath}\n` +
        formatRows([
          ['app', started.appId],
          ['app api key', started.createdAppKey],
          ['', started.createdAppKey === null ? null : 'the gateway app was created now: save this key, it will not be shown again'],
          ['chain step', `${formatMsat(stepMsat)} msat`],
          ['health', `${started.url}${config.healthPath}`],
          ...config.routes.map((rule, index) => [index === 0 ? 'routes' : '', describeRule(rule)] as const),
        ]);
      return { banner, close: () => started.gateway.close() };
    },
  });
}
