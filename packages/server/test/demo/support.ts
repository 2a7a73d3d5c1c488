/** A test Sluice listening on a socket, with the demo served from the SDK compiled now. */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The SDK's ES modules, compiled now so the page gets the code under test. */
export function buildSdk(): string {
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'packages/client'], { cwd: REPO_ROOT, stdio: 'pipe' });
  return path.join(REPO_ROOT, 'packages/client/dist');
}

export interface DemoSluice {
  t: TestSluice;
  baseUrl: string;
  close(): Promise<void>;
}

export async function startDemoSluice(): Promise<DemoSluice> {
  const sdkDir = buildSdk();
  const t = await startTestSluice({ sdkDir });
  const baseUrl = await t.sluice.listen();
  return { t, baseUrl, close: () => t.close() };
}
