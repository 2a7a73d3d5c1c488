// docs/errors.md must list exactly the codes in src/errors/codes.ts, with the same status.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../src/errors/codes.js';

const doc = fs.readFileSync(path.resolve(__dirname, '../../../../docs/errors.md'), 'utf8');
const serverSection = doc.split('## Client-side codes')[0] as string;
const documented = new Map(
  [...serverSection.matchAll(/^\| `([a-z0-9_]+)` \| (\d{3}) \|/gm)].map((match) => [match[1] as string, Number(match[2])]),
);

describe('docs/errors.md', () => {
  it('lists every error code with its HTTP status', () => {
    for (const [code, { status }] of Object.entries(ERROR_CODES)) {
      expect(documented.get(code), `docs/errors.md is missing ${code}`).toBe(status);
    }
  });

  it('lists no code that the server does not have', () => {
    for (const code of documented.keys()) {
      expect(Object.keys(ERROR_CODES), `docs/errors.md documents unknown code ${code}`).toContain(code);
    }
  });

  it('is used by the source: every code appears somewhere outside the registry', () => {
    const sources = collectSources(path.resolve(__dirname, '../../src')).filter((file) => !file.endsWith(path.join('errors', 'codes.ts')));
    const text = sources.map((file) => fs.readFileSync(file, 'utf8')).join('\n');
    const unused = Object.keys(ERROR_CODES).filter((code) => !text.includes(`'${code}'`));
    expect(unused).toEqual([]);
  });
});

function collectSources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? collectSources(full) : entry.name.endsWith('.ts') ? [full] : [];
  });
}
