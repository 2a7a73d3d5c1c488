/**
 * The REST API from the page: JSON in and out, the key only in the Authorization header,
 * errors turned into exceptions carrying Sluice's stable code.
 */

export class ApiCallError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) {
    super(message);
  }
}

export async function api<T = any>(key: string | null, method: string, path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = {};
  if (key !== null) headers.authorization = `Bearer ${key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(path, { method, headers, ...(body === undefined ? {} : { body: JSON.stringify(body) }), cache: 'no-store' });
  const text = await response.text();
  let parsed: any = null;
  try {
    parsed = text === '' ? null : JSON.parse(text);
  } catch {
    parsed = null;
  }
  if (!response.ok) {
    const code = typeof parsed?.error?.code === 'string' ? parsed.error.code : 'http_error';
    const message = typeof parsed?.error?.message === 'string' ? parsed.error.message : `HTTP ${response.status}`;
    throw new ApiCallError(response.status, code, `${code}: ${message}`);
  }
  return parsed as T;
}

/** An idempotency key for one click (works on plain-http origins too, unlike randomUUID). */
export function freshKey(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(12));
  return prefix + Array.from(bytes, (byte) => byte.toString(16).padStart(2, '0')).join('');
}

/** Keys kept in this tab only: sessionStorage ends with the tab, and is never sent anywhere by itself. */
export const keyStore = {
  get(name: string): string | null {
    return sessionStorage.getItem(`sluice.${name}`);
  },
  set(name: string, value: string | null): void {
    if (value === null) sessionStorage.removeItem(`sluice.${name}`);
    else sessionStorage.setItem(`sluice.${name}`, value);
  },
};

export interface Session {
  kind: 'admin' | 'app' | 'payer';
  devnet: boolean;
  app: { id: string; name: string } | null;
  stream_id: string | null;
  subscription_id: string | null;
  devnet_wallets: { name: string; pubkey: string; balance_msat: string }[];
}

export const session = (key: string): Promise<Session> => api<Session>(key, 'GET', '/dashboard/api/session');
