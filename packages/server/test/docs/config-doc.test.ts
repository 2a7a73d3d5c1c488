// docs/config.md must list exactly the settings in src/config.ts, and every setting must
// be read by loadConfig.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig, SETTINGS } from '../../src/config.js';

const doc = fs.readFileSync(path.resolve(__dirname, '../../../../docs/config.md'), 'utf8');
const mainTable = doc.split('## Production on LND')[0] as string;
const documented = [...mainTable.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((match) => match[1] as string);
const configSource = fs.readFileSync(path.resolve(__dirname, '../../src/config.ts'), 'utf8');

describe('docs/config.md', () => {
  it('documents exactly the settings the code knows', () => {
    expect([...documented].sort()).toEqual(SETTINGS.map((setting) => setting.name).sort());
  });

  it('every documented setting is read by loadConfig', () => {
    const body = configSource.slice(configSource.indexOf('export function loadConfig'));
    for (const { name } of SETTINGS) expect(body, `${name} is documented but never read`).toContain(`'${name}'`);
  });
});

describe('loadConfig', () => {
  const rows: { description: string; env: Record<string, string>; error?: RegExp }[] = [
    { description: 'defaults', env: {} },
    { description: 'port out of range', env: { PORT: '70000' }, error: /PORT must be an integer/ },
    { description: 'port not a number', env: { PORT: '80a' }, error: /PORT/ },
    { description: 'unknown backend', env: { SLUICE_LIGHTNING: 'eclair' }, error: /SLUICE_LIGHTNING must be one of/ },
    { description: 'lnd without its files', env: { SLUICE_LIGHTNING: 'lnd' }, error: /LND_REST_URL is required/ },
    { description: 'database url not postgres', env: { SLUICE_DATABASE_URL: 'mysql://x' }, error: /SLUICE_DATABASE_URL/ },
    { description: 'short admin key', env: { SLUICE_ADMIN_KEY: 'short' }, error: /at least 16/ },
    { description: 'bad log level', env: { LOG_LEVEL: 'loud' }, error: /LOG_LEVEL/ },
  ];
  for (const row of rows) {
    it(row.description, () => {
      const result = loadConfig(row.env, '/srv/sluice');
      if (row.error) {
        expect(result.ok).toBe(false);
        if (!result.ok) expect(result.errors.join('\n')).toMatch(row.error);
      } else {
        expect(result.ok).toBe(true);
        if (result.ok) {
          expect(result.config.port).toBe(8402);
          expect(result.config.dataDir).toBe('/srv/sluice/data');
          expect(result.config.lightning).toBe('devnet');
          expect(result.config.databaseUrl).toBeNull();
        }
      }
    });
  }
});
