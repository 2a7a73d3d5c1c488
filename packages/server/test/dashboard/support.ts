/** A test Sluice on a socket, with the dashboards' browser modules compiled now (the code under test). */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestSluice, type TestSluice } from '../support/sluice.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

export function buildDashboard(): void {
  execFileSync(process.execPath, [path.join(REPO_ROOT, 'node_modules/typescript/bin/tsc'), '-b', 'packages/server/src/dashboard/web'], { cwd: REPO_ROOT, stdio: 'pipe' });
}

export interface DashboardSluice {
  t: TestSluice;
  baseUrl: string;
  close(): Promise<void>;
}

export async function startDashboardSluice(options: Parameters<typeof startTestSluice>[0] = {}): Promise<DashboardSluice> {
  buildDashboard();
  const t = await startTestSluice(options);
  const baseUrl = await t.sluice.listen();
  return { t, baseUrl, close: () => t.close() };
}
