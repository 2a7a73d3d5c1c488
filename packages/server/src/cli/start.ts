/**
 * `sluice start`: loads the configuration from the environment, opens Sluice, listens, and
 * prints a short banner. SIGINT or SIGTERM closes it gracefully (drain requests, stop the
 * watchers, flush the ledger) and exits 0; a second signal exits at once.
 */
import path from 'node:path';
import { loadConfig } from '../config.js';
import { formatRows } from './format.js';
import { EXIT, type CliIo } from './io.js';
import type { Sluice } from '../app.js';

export interface StartDeps {
  io: CliIo;
  /** Ends the process; a test can replace it. */
  exit(code: number): void;
  onSignal(signal: 'SIGINT' | 'SIGTERM', handler: () => void): void;
}

/**
 * Something that runs beside Sluice in the same process (`sluice gateway`): attached once
 * Sluice listens, closed before Sluice closes. A failed attach stops the start (exit 1).
 */
export interface StartExtension {
  /** The code printed as `error <code>: <message>` when attach throws. */
  readonly failureCode: string;
  attach(sluice: Sluice, url: string): Promise<{ banner: string; close(): Promise<void> }>;
}

const SIGNAL_EXIT = { SIGINT: 130, SIGTERM: 143 } as const;

function describeStartError(error: unknown, port: number): string {
  const code = (error as { code?: unknown }).code;
  if (code === 'EADDRINUSE') return `port ${port} is already in use (set PORT to another port)`;
  if (code === 'EACCES') return `no permission to listen on port ${port}`;
  return error instanceof Error ? error.message : String(error);
}

export async function runStart(deps: StartDeps, extension?: StartExtension): Promise<void> {
  const { io } = deps;
  const loaded = loadConfig(deps.io.env);
  if (!loaded.ok) {
    io.stderr('error config_invalid: the configuration is not valid (see docs/config.md):\n');
    for (const message of loaded.errors) io.stderr(`  - ${message}\n`);
    deps.exit(EXIT.usage);
    return;
  }
  const config = loaded.config;
  // Imported here so that client commands (and `decode`) do not load the server.
  const { createSluice, VERSION } = await import('../app.js');

  let sluice: Awaited<ReturnType<typeof createSluice>>;
  try {
    sluice = await createSluice(config, { seedDemoBusinesses: true });
  } catch (error) {
    io.stderr(`error start_failed: ${describeStartError(error, config.port)}\n`);
    deps.exit(EXIT.error);
    return;
  }

  // Before listen and before the banner: a script that signals as soon as it sees the banner
  // must find the handlers installed, not the default action (an abrupt kill).
  let stopping = false;
  let closeExtension = async (): Promise<void> => undefined;
  const stop = (signal: 'SIGINT' | 'SIGTERM'): void => {
    if (stopping) {
      io.stderr(`${signal} again: exiting now\n`);
      deps.exit(SIGNAL_EXIT[signal]);
      return;
    }
    stopping = true;
    io.stderr(`${signal}: shutting down (send it again to exit at once)\n`);
    const timer = setTimeout(() => {
      io.stderr(`error shutdown_timeout: shutdown took longer than ${config.shutdownTimeoutMs} ms; exiting\n`);
      deps.exit(EXIT.error);
    }, config.shutdownTimeoutMs + 5_000);
    closeExtension().then(() => sluice.close()).then(
      () => {
        clearTimeout(timer);
        io.stderr('stopped\n');
        deps.exit(EXIT.ok);
      },
      (error: unknown) => {
        clearTimeout(timer);
        io.stderr(`error shutdown_failed: ${error instanceof Error ? error.message : String(error)}\n`);
        deps.exit(EXIT.error);
      },
    );
  };
  deps.onSignal('SIGINT', () => stop('SIGINT'));
  deps.onSignal('SIGTERM', () => stop('SIGTERM'));

  let url: string;
  try {
    url = await sluice.listen();
  } catch (error) {
    if (stopping) return; // a signal came during listen; stop() is closing and will exit
    io.stderr(`error start_failed: ${describeStartError(error, config.port)}\n`);
    await sluice.close().catch(() => undefined);
    deps.exit(EXIT.error);
    return;
  }

  if (stopping) return;
  let extensionBanner = '';
  if (extension !== undefined) {
    try {
      const attached = await extension.attach(sluice, url);
      closeExtension = attached.close;
      extensionBanner = attached.banner;
    } catch (error) {
      if (stopping) return;
      io.stderr(`error ${extension.failureCode}: ${describeStartError(error, config.port)}\n`);
      await sluice.close().catch(() => undefined);
      deps.exit(EXIT.error);
      return;
    }
    if (stopping) return;
  }
  const devnet = sluice.nodeInfo.backend === 'devnet';
  const store = sluice.store === 'sqlite' ? `sqlite (${path.join(config.dataDir, 'sluice.sqlite')})` : 'postgres';
  let banner = `Sluice ${VERSION} listening on ${url}\n`;
  banner += formatRows([
    ['lightning', `${sluice.nodeInfo.backend} (${sluice.nodeInfo.network})${devnet ? ' — FAKE MONEY: a simulated network, nothing here is real bitcoin' : ''}`],
    ['node', sluice.nodeInfo.pubkey],
    ['store', store],
    ['data dir', config.dataDir],
    ['dashboard', `${url}/dashboard/ (merchants), ${url}/me/ (customers)`],
    ['demo game', devnet ? `${url}/demo/` : null],
    ['admin key', sluice.generatedAdminKey],
    ['', sluice.generatedAdminKey === null ? null : 'save this now, it will not be shown again (only its hash is stored)'],
  ]);
  io.stdout(banner + extensionBanner);
}
