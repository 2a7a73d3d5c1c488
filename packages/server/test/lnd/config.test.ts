/** Loading the LND settings from LND_REST_URL, LND_MACAROON_PATH and LND_TLS_CERT_PATH. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { createLndBackendFromFiles, loadLndOptionsFromEnv } from '../../src/lightning/lnd/index.js';
import { generateSelfSignedTls } from '../support/lnd-standin.js';

describe('loadLndOptionsFromEnv', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'sluice-lnd-config-'));
  const file = (name: string) => path.join(dir, name);
  // A binary macaroon as LND writes it (version byte 0x02 first), and the same as hex text.
  const macaroonBytes = Buffer.from('0201036c6e6402f801030a10', 'hex');

  beforeAll(async () => {
    const tls = await generateSelfSignedTls();
    writeFileSync(file('tls.cert'), tls.certPem);
    writeFileSync(file('admin.macaroon'), macaroonBytes);
    writeFileSync(file('admin.macaroon.hex'), macaroonBytes.toString('hex').toUpperCase() + '\n');
    writeFileSync(file('not-a-cert.pem'), '-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n');
    writeFileSync(file('empty.macaroon'), '');
  });

  const env = (overrides: Record<string, string | undefined>) => ({
    LND_REST_URL: 'https://127.0.0.1:8080',
    LND_MACAROON_PATH: file('admin.macaroon'),
    LND_TLS_CERT_PATH: file('tls.cert'),
    ...overrides,
  });

  const failures = [
    { description: 'no REST URL', overrides: { LND_REST_URL: undefined }, error: 'MissingRestUrl', message: /LND_REST_URL is not set/ },
    { description: 'a plain-HTTP REST URL', overrides: { LND_REST_URL: 'http://127.0.0.1:8080' }, error: 'InvalidRestUrl', message: /https/ },
    { description: 'a REST URL that is not a URL', overrides: { LND_REST_URL: 'lnd:8080 ' }, error: 'InvalidRestUrl', message: /LND_REST_URL/ },
    { description: 'no macaroon path', overrides: { LND_MACAROON_PATH: undefined }, error: 'MissingMacaroon', message: /LND_MACAROON_PATH is not set/ },
    { description: 'a macaroon file that does not exist', overrides: { LND_MACAROON_PATH: file('nope') }, error: 'UnreadableMacaroonFile', message: /ENOENT/ },
    { description: 'an empty macaroon file', overrides: { LND_MACAROON_PATH: file('empty.macaroon') }, error: 'MissingMacaroon', message: /no LND macaroon/ },
    { description: 'no certificate path', overrides: { LND_TLS_CERT_PATH: undefined }, error: 'MissingTlsCert', message: /LND_TLS_CERT_PATH is not set/ },
    { description: 'a certificate file that does not exist', overrides: { LND_TLS_CERT_PATH: file('nope.cert') }, error: 'UnreadableTlsCertFile', message: /ENOENT/ },
    { description: 'a certificate file that is not a certificate', overrides: { LND_TLS_CERT_PATH: file('not-a-cert.pem') }, error: 'InvalidTlsCert', message: /tls.cert/ },
  ];
  it.each(failures)('refuses $description', async ({ overrides, error, message }) => {
    const result = await loadLndOptionsFromEnv(env(overrides));
    expect(result).toMatchObject({ ok: false, error });
    if (!result.ok) expect(result.message).toMatch(message);
  });

  it('reads a binary macaroon file as bytes', async () => {
    const result = await loadLndOptionsFromEnv(env({}));
    expect(result.ok && Buffer.from(result.options.macaroon ?? []).toString('hex')).toBe(macaroonBytes.toString('hex'));
  });

  it('reads a macaroon file holding hex as hex', async () => {
    const result = await loadLndOptionsFromEnv(env({ LND_MACAROON_PATH: file('admin.macaroon.hex') }));
    expect(result.ok && result.options.macaroonHex?.toLowerCase()).toBe(macaroonBytes.toString('hex'));
  });

  it('createLndBackendFromFiles rejects with the setting to fix', async () => {
    await expect(createLndBackendFromFiles({ restUrl: 'https://127.0.0.1:8080', macaroonPath: file('nope'), tlsCertPath: file('tls.cert') })).rejects.toThrow(
      /UnreadableMacaroonFile.*LND_MACAROON_PATH/,
    );
    const backend = await createLndBackendFromFiles({ restUrl: 'https://127.0.0.1:8080', macaroonPath: file('admin.macaroon'), tlsCertPath: file('tls.cert') });
    expect(backend.kind).toBe('lnd');
    await backend.close();
  });
});
