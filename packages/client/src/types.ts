/**
 * What the SDK's methods take and return. Field names are the wire names (snake_case), so
 * the HTTP API reference and the SDK share one vocabulary; only the types differ:
 *
 * - amounts are `bigint` millisatoshis (`"1500"` on the wire is `1500n` here);
 * - times are `Date` objects (ISO 8601 strings on the wire); `null` stays `null`.
 */

/**
 * Health and configuration of a Sluice server (`GET /v1/health`, no key needed).
 *
 * @example
 * ```ts
 * const health: Health = await client.health();
 * if (health.lightning.fake_money) console.warn('devnet: fake money');
 * ```
 */
export interface Health {
  status: 'ok';
  lightning: {
    /** 'devnet' or 'lnd'. */
    backend: string;
    /** 'mainnet', 'testnet', 'signet' or 'regtest'. */
    network: string;
    /** The node's public key, 33 bytes hex. */
    pubkey: string;
    /** true on the devnet: nothing there is real bitcoin. */
    fake_money: boolean;
  };
  store: 'sqlite' | 'postgres';
}

/**
 * An app: the owner of a balance and of API keys.
 *
 * @example
 * ```ts
 * const apps: App[] = await admin.listApps();
 * const active = apps.filter((app) => app.revoked_at === null);
 * ```
 */
export interface App {
  id: string;
  name: string;
  created_at: Date;
  revoked_at: Date | null;
}

/**
 * A new app and its first API key. The key is shown only here: store it now.
 *
 * @example
 * ```ts
 * const created: CreatedApp = await admin.createApp({ name: 'my game' });
 * const appClient = new SluiceClient({ baseUrl, apiKey: created.api_key });
 * ```
 */
export interface CreatedApp {
  id: string;
  name: string;
  /** The secret API key (`sk_...`): returned once, stored only hashed on the server. */
  api_key: string;
  /** The id of that key, to revoke it later. */
  key_id: string;
  created_at: Date;
}

/**
 * An app's API key as listed: its id and first characters, never the secret.
 *
 * @example
 * ```ts
 * const keys: ApiKey[] = await admin.listApiKeys(appId);
 * for (const key of keys) console.log(key.prefix, key.revoked_at ? 'revoked' : 'active');
 * ```
 */
export interface ApiKey {
  id: string;
  /** The first characters of the key, to recognise it. */
  prefix: string;
  created_at: Date;
  revoked_at: Date | null;
}

/**
 * A new API key for an existing app. The secret is shown only here.
 *
 * @example
 * ```ts
 * const created: CreatedApiKey = await admin.createApiKey(appId);
 * saveSecret(created.api_key);
 * ```
 */
export interface CreatedApiKey {
  id: string;
  api_key: string;
  prefix: string;
  created_at: Date;
}

/**
 * The calling app's balance, in msat.
 *
 * @example
 * ```ts
 * const balance: Balance = await client.balance();
 * if (balance.available_msat < 1_000n) console.log('top up');
 * ```
 */
export interface Balance {
  /** Posted balance. */
  balance_msat: bigint;
  /** Held by outgoing payments in flight. */
  held_msat: bigint;
  /** What new payments may use: balance minus holds. */
  available_msat: bigint;
}

/**
 * An invoice the app asked for; when paid, its amount is credited to the app.
 *
 * @example
 * ```ts
 * const invoice: Invoice = await client.getInvoice(paymentHash);
 * if (invoice.status === 'paid') console.log('paid', invoice.amount_paid_msat);
 * ```
 */
export interface Invoice {
  /** 32 bytes, lowercase hex: the invoice's id. */
  payment_hash: string;
  /** The BOLT 11 text to show the payer (as text or QR code). */
  payment_request: string;
  amount_msat: bigint;
  description: string;
  status: 'open' | 'paid' | 'expired';
  created_at: Date;
  expires_at: Date;
  paid_at: Date | null;
  amount_paid_msat: bigint | null;
}

/**
 * Arguments of `createInvoice`.
 *
 * @example
 * ```ts
 * const request: CreateInvoiceRequest = { amount_msat: 21_000n, description: 'a coffee', expiry_s: 600 };
 * ```
 */
export interface CreateInvoiceRequest {
  /** At least 1 msat. */
  amount_msat: bigint;
  /** At most 639 bytes (BOLT 11). */
  description?: string;
  /** 60 to 31536000 seconds; the server's default when omitted. */
  expiry_s?: number;
  /** Optional here (an invoice moves no money); makes a retry return the same invoice. */
  idempotency_key?: string;
}

/**
 * An outgoing payment from the app's balance. `pending` means the outcome is not known yet
 * (never treat it as failed): ask again with `getPayment`.
 *
 * @example
 * ```ts
 * const payment: Payment = await client.getPayment(paymentHash);
 * if (payment.status === 'succeeded') console.log('proof of payment', payment.preimage);
 * ```
 */
export interface Payment {
  id: string;
  payment_hash: string;
  kind: 'invoice' | 'keysend';
  /** The payee's node public key. */
  destination: string;
  amount_msat: bigint;
  /** The most the app agreed to pay in routing fees. */
  max_fee_msat: bigint;
  /** The routing fee paid; null until the payment succeeded. */
  fee_msat: bigint | null;
  status: 'pending' | 'succeeded' | 'failed';
  failure_reason: string | null;
  /** The proof of payment, once it succeeded. */
  preimage?: string;
  created_at: Date;
  resolved_at: Date | null;
}

/**
 * Arguments of `pay` for a BOLT 11 invoice.
 *
 * @example
 * ```ts
 * const request: PayInvoiceRequest = { payment_request: 'lnbcrt...', max_fee_msat: 5_000n, idempotency_key: newIdempotencyKey() };
 * ```
 */
export interface PayInvoiceRequest {
  payment_request: string;
  /** Only for invoices without an amount. */
  amount_msat?: bigint;
  /** The most to pay in routing fees; the server's default when omitted. */
  max_fee_msat?: bigint;
  /** Required: keep it and send it again on every retry of this payment. */
  idempotency_key: string;
}

/**
 * Arguments of `pay` for a keysend (a payment to a node, without an invoice).
 *
 * @example
 * ```ts
 * const request: PayKeysendRequest = { keysend: { pubkey: '02...' }, amount_msat: 1_000n, idempotency_key: newIdempotencyKey() };
 * ```
 */
export interface PayKeysendRequest {
  keysend: { pubkey: string };
  amount_msat: bigint;
  max_fee_msat?: bigint;
  idempotency_key: string;
}

/**
 * Arguments of `pay`: an invoice or a keysend, always with an idempotency key.
 *
 * @example
 * ```ts
 * const request: PayRequest = { payment_request: bolt11, idempotency_key: newIdempotencyKey() };
 * await client.pay(request);
 * ```
 */
export type PayRequest = PayInvoiceRequest | PayKeysendRequest;

/**
 * Options of the list methods.
 *
 * @example
 * ```ts
 * const options: ListOptions = { limit: 10 };
 * const latest = await client.listInvoices(options);
 * ```
 */
export interface ListOptions {
  /** How many, newest first: 1 to 1000 (default 100). */
  limit?: number;
}

/**
 * One wallet of the devnet (fake money).
 *
 * @example
 * ```ts
 * const { wallets } = await client.devnetWallets();
 * const alice: DevnetWallet | undefined = wallets.find((wallet) => wallet.name === 'alice');
 * ```
 */
export interface DevnetWallet {
  name: string;
  balance_msat: bigint;
}

/**
 * The devnet's wallets and their balances.
 *
 * @example
 * ```ts
 * const devnet: DevnetWallets = await client.devnetWallets();
 * console.log(devnet.wallets.map((wallet) => wallet.name));
 * ```
 */
export interface DevnetWallets {
  fake_money: true;
  wallets: DevnetWallet[];
}

/**
 * Arguments of `devnetPay`.
 *
 * @example
 * ```ts
 * const request: DevnetPayRequest = { payment_request: invoice.payment_request, wallet: 'bob' };
 * ```
 */
export interface DevnetPayRequest {
  payment_request: string;
  /** A devnet wallet (default 'alice'). */
  wallet?: string;
  /** Only for invoices without an amount. */
  amount_msat?: bigint;
}

/**
 * A devnet wallet's payment (fake money).
 *
 * @example
 * ```ts
 * const paid: DevnetPayment = await client.devnetPay({ payment_request });
 * console.log(paid.preimage);
 * ```
 */
export interface DevnetPayment {
  payment_hash: string;
  preimage: string;
  amount_msat: bigint;
  fee_msat: bigint;
  wallet: string;
}

/**
 * Arguments of `devnetInvoice`.
 *
 * @example
 * ```ts
 * const request: DevnetInvoiceRequest = { amount_msat: 5_000n, wallet: 'carol', description: 'payout' };
 * ```
 */
export interface DevnetInvoiceRequest {
  amount_msat: bigint;
  description?: string;
  /** 60 to 31536000 seconds (default 3600). */
  expiry_s?: number;
  /** A devnet wallet (default 'alice'). */
  wallet?: string;
}

/**
 * An invoice issued by a devnet wallet, for the app to pay (fake money).
 *
 * @example
 * ```ts
 * const invoice: DevnetInvoice = await client.devnetInvoice({ amount_msat: 5_000n });
 * await client.pay({ payment_request: invoice.payment_request, idempotency_key: newIdempotencyKey() });
 * ```
 */
export interface DevnetInvoice {
  payment_hash: string;
  payment_request: string;
  amount_msat: bigint;
  expires_at: Date;
  wallet: string;
}
