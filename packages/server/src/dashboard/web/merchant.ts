/**
 * The merchant dashboard (/dashboard/). The admin key manages apps and keys; an app key
 * shows that app's balance, streams, invoices, payments, webhooks (with the delivery log
 * and redelivery), plans and subscriptions when the server has them, and on the devnet the
 * wallets that can pay its invoices (and, for the admin, the clock to move forward). Both
 * keys live in sessionStorage only.
 */
import { api, freshKey, keyStore, session, type ApiCallError } from './api.js';
import { byId, cell, fillTable, h, inputValue, onSubmit, qrImage, say, stateCell, busy } from './dom.js';
import { duration, short, sats, when } from './format.js';
import { initSubscriptions, refreshSubscriptions } from './merchant-subscriptions.js';

const state = {
  adminKey: keyStore.get('admin'),
  appKey: keyStore.get('app'),
  devnet: false,
  keysApp: null as { id: string; name: string } | null,
  endpoint: null as { id: string; url: string } | null,
  newKey: null as string | null,
  refreshing: false,
};

// For the browser test: when the last refresh of the app's data finished.
(window as unknown as { dashboard: unknown }).dashboard = { state, refreshedAt: 0 };
const markRefreshed = () => ((window as unknown as { dashboard: { refreshedAt: number } }).dashboard.refreshedAt = Date.now());

function showMsat(id: string, msat: string): void {
  const element = byId(id);
  element.textContent = sats(msat);
  element.dataset.msat = msat;
}

function button(text: string, action: () => Promise<void>, attributes: Record<string, string> = {}): HTMLButtonElement {
  const element = h('button', { type: 'button', class: 'secondary', ...attributes }, text);
  element.addEventListener('click', () => void busy(element, action));
  return element;
}

// ---- sign in ----

async function signIn(kind: 'admin' | 'app', key: string): Promise<void> {
  const who = await session(key);
  if (who.kind !== kind) throw new Error(kind === 'admin' ? 'this is not the admin key' : 'this is not an app API key');
  if (kind === 'admin') state.adminKey = key;
  else state.appKey = key;
  keyStore.set(kind, key);
  await render();
}

async function render(): Promise<void> {
  const who: string[] = [];
  let devnet = false;
  if (state.adminKey) {
    try {
      devnet = (await session(state.adminKey)).devnet;
      who.push('admin');
    } catch (error) {
      state.adminKey = null;
      keyStore.set('admin', null);
      say(`admin key refused: ${(error as Error).message}`);
    }
  }
  let appName: string | null = null;
  if (state.appKey) {
    try {
      const me = await session(state.appKey);
      devnet = me.devnet;
      appName = me.app?.name ?? '?';
      who.push(`app ${appName} (${me.app?.id ?? '?'})`);
    } catch (error) {
      state.appKey = null;
      keyStore.set('app', null);
      say(`app key refused: ${(error as Error).message}`);
    }
  }
  state.devnet = devnet;
  byId('who').textContent = who.length > 0 ? `Signed in as ${who.join(' and ')}` : '';
  byId('sign-out').hidden = who.length === 0;
  // Signed in both ways: nothing left to sign in with (Sign out starts over).
  byId('signin').hidden = state.adminKey !== null && state.appKey !== null;
  byId('devnet-badge').hidden = !devnet;
  byId('admin').hidden = state.adminKey === null;
  byId('app').hidden = state.appKey === null;
  byId('devnet').hidden = !(devnet && state.appKey !== null);
  byId('devnet-clock').hidden = !(devnet && state.adminKey !== null);
  renderNav();
  if (state.adminKey) await refreshApps();
  if (state.appKey) {
    await initSubscriptions(state.appKey);
    renderNav();
    await refreshAppData();
  }
}

/** Links to the sections shown now (a fragment only: nothing secret ever goes in the URL). */
function renderNav(): void {
  const shown: Record<string, boolean> = {
    admin: state.adminKey !== null,
    app: state.appKey !== null,
    devnet: state.devnet && state.appKey !== null,
    subscriptions: state.appKey !== null && !byId('subscriptions-section').hidden,
  };
  const nav = byId('nav');
  nav.hidden = !shown.admin && !shown.app;
  for (const link of Array.from(nav.querySelectorAll<HTMLAnchorElement>('a[data-for]'))) link.hidden = !shown[link.dataset.for ?? ''];
}

// ---- admin: apps and keys ----

async function refreshApps(): Promise<void> {
  const key = state.adminKey;
  if (!key) return;
  const { apps } = await api<{ apps: { id: string; name: string; created_at: string; revoked_at: string | null }[] }>(key, 'GET', '/v1/apps');
  fillTable('apps', apps.map((app) => h('tr', { 'data-id': app.id, 'data-name': app.name },
    cell(app.name),
    cell(app.id, 'mono'),
    cell(when(app.created_at)),
    stateCell(app.revoked_at === null ? 'active' : 'revoked'),
    h('td', {},
      button('Keys', () => showKeys(app), { 'data-action': 'keys' }),
      app.revoked_at === null ? button('New key', () => newKey(app), { 'data-action': 'new-key' }) : null,
      app.revoked_at === null ? button('Revoke app', async () => {
        if (!confirm(`Revoke the app ${app.name} and every key it has?`)) return;
        await api(key, 'POST', `/v1/apps/${encodeURIComponent(app.id)}/revoke`);
        say(`app ${app.name} revoked`, 'ok');
        await refreshApps();
      }, { 'data-action': 'revoke', class: 'danger' }) : null),
  )), 'No apps yet.');
  if (state.keysApp) await showKeys(state.keysApp);
}

function showNewKey(app: { name: string }, apiKey: string): void {
  state.newKey = apiKey;
  byId('new-key').hidden = false;
  byId('new-key-app').textContent = app.name;
  byId('new-key-value').textContent = apiKey;
}

async function newKey(app: { id: string; name: string }): Promise<void> {
  const created = await api<{ api_key: string }>(state.adminKey, 'POST', `/v1/apps/${encodeURIComponent(app.id)}/keys`);
  showNewKey(app, created.api_key);
  await showKeys(app);
}

async function showKeys(app: { id: string; name: string }): Promise<void> {
  const key = state.adminKey;
  if (!key) return;
  state.keysApp = app;
  const { keys } = await api<{ keys: { id: string; prefix: string; created_at: string; revoked_at: string | null }[] }>(key, 'GET', `/v1/apps/${encodeURIComponent(app.id)}/keys`);
  byId('keys-panel').hidden = false;
  byId('keys-app').textContent = app.name;
  fillTable('keys', keys.map((apiKey) => h('tr', { 'data-id': apiKey.id },
    cell(`${apiKey.prefix}…`, 'mono'),
    cell(apiKey.id, 'mono'),
    cell(when(apiKey.created_at)),
    stateCell(apiKey.revoked_at === null ? 'active' : 'revoked'),
    h('td', {}, apiKey.revoked_at === null ? button('Revoke', async () => {
      await api(key, 'POST', `/v1/apps/${encodeURIComponent(app.id)}/keys/${encodeURIComponent(apiKey.id)}/revoke`);
      say(`key ${apiKey.prefix}… revoked`, 'ok');
      await showKeys(app);
    }, { 'data-action': 'revoke', class: 'danger' }) : null),
  )), 'No keys.');
}

// ---- the app's data ----

async function refreshAppData(): Promise<void> {
  const key = state.appKey;
  if (!key || state.refreshing) return;
  state.refreshing = true;
  try {
    await Promise.all([
      refreshBalance(key),
      refreshStreams(key),
      refreshInvoices(key),
      refreshPayments(key),
      refreshWebhooks(key),
      state.devnet ? refreshWallets(key) : Promise.resolve(),
      refreshSubscriptions(key),
    ]);
    markRefreshed();
  } catch (error) {
    const failure = error as ApiCallError;
    if (failure.status === 401) {
      state.appKey = null;
      keyStore.set('app', null);
      await render();
    }
    say(failure.message);
  } finally {
    state.refreshing = false;
  }
}

async function refreshBalance(key: string): Promise<void> {
  const balance = await api<{ balance_msat: string; held_msat: string; available_msat: string }>(key, 'GET', '/v1/balance');
  showMsat('balance', balance.balance_msat);
  showMsat('held', balance.held_msat);
  showMsat('available', balance.available_msat);
}

interface StreamJson {
  id: string; status: string; meter: string; balance_msat: string; rate_msat_per_s: string; metadata: string; created_at: string;
}

async function refreshStreams(key: string): Promise<void> {
  const { streams } = await api<{ streams: StreamJson[] }>(key, 'GET', '/v1/streams?limit=100');
  fillTable('streams', streams.map((stream) => h('tr', { 'data-id': stream.id, 'data-status': stream.status, 'data-msat': stream.balance_msat },
    cell(stream.id, 'mono'),
    stateCell(stream.status),
    stateCell(stream.meter),
    cell(sats(stream.balance_msat), 'num balance'),
    cell(stream.rate_msat_per_s === '0' ? '—' : `${sats(stream.rate_msat_per_s)}/s`, 'num'),
    cell(stream.metadata),
    cell(when(stream.created_at)),
  )), 'No streams yet.');
}

interface InvoiceJson { payment_hash: string; payment_request: string; amount_msat: string; description: string; status: string; created_at: string }

async function refreshInvoices(key: string): Promise<void> {
  const { invoices } = await api<{ invoices: InvoiceJson[] }>(key, 'GET', '/v1/invoices?limit=50');
  fillTable('invoices', invoices.map((invoice) => h('tr', { 'data-id': invoice.payment_hash, 'data-status': invoice.status },
    cell(short(invoice.payment_hash, 16), 'mono'),
    cell(sats(invoice.amount_msat), 'num'),
    stateCell(invoice.status),
    cell(invoice.description),
    cell(when(invoice.created_at)),
    h('td', {}, state.devnet && invoice.status === 'open'
      ? button('Pay from devnet wallet', () => payFromDevnet(invoice.payment_request), { 'data-action': 'devnet-pay' })
      : null),
  )), 'No invoices yet.');
}

async function refreshPayments(key: string): Promise<void> {
  const { payments } = await api<{ payments: { id: string; payment_hash: string; kind: string; amount_msat: string; fee_msat: string | null; status: string; created_at: string }[] }>(key, 'GET', '/v1/payments?limit=50');
  fillTable('payments', payments.map((payment) => h('tr', { 'data-id': payment.id, 'data-status': payment.status },
    cell(short(payment.payment_hash, 16), 'mono'),
    cell(payment.kind),
    cell(sats(payment.amount_msat), 'num'),
    cell(payment.fee_msat === null ? '—' : sats(payment.fee_msat), 'num'),
    stateCell(payment.status),
    cell(when(payment.created_at)),
  )), 'No payments yet.');
}

// ---- webhooks ----

interface EndpointJson { id: string; url: string; event_types: string[]; status: string; consecutive_failures: number }
interface DeliveryJson {
  id: string; event_id: string; status: string; attempts: number; last_status_code: number | null; last_error: string | null; manual: boolean; created_at: string;
}

async function refreshWebhooks(key: string): Promise<void> {
  const { endpoints } = await api<{ endpoints: EndpointJson[] }>(key, 'GET', '/v1/webhooks');
  fillTable('webhooks', endpoints.map((endpoint) => h('tr', { 'data-id': endpoint.id },
    cell(endpoint.url, 'mono'),
    cell(endpoint.id, 'mono'),
    cell(endpoint.event_types.join(', ')),
    stateCell(endpoint.status),
    cell(String(endpoint.consecutive_failures), 'num'),
    h('td', {},
      button('Delivery log', async () => {
        state.endpoint = { id: endpoint.id, url: endpoint.url };
        await refreshDeliveries(key);
      }, { 'data-action': 'deliveries' }),
      button(endpoint.status === 'enabled' ? 'Disable' : 'Enable', async () => {
        await api(key, 'PATCH', `/v1/webhooks/${encodeURIComponent(endpoint.id)}`, { enabled: endpoint.status !== 'enabled' });
        await refreshWebhooks(key);
      }, { 'data-action': 'toggle' }),
      button('Delete', async () => {
        if (!confirm(`Delete the endpoint ${endpoint.url}?`)) return;
        await api(key, 'DELETE', `/v1/webhooks/${encodeURIComponent(endpoint.id)}`);
        if (state.endpoint?.id === endpoint.id) state.endpoint = null;
        await refreshWebhooks(key);
      }, { 'data-action': 'delete', class: 'danger' })),
  )), 'No webhook endpoints.');
  if (state.endpoint && !endpoints.some((endpoint) => endpoint.id === state.endpoint?.id)) state.endpoint = null;
  await refreshDeliveries(key);
}

async function refreshDeliveries(key: string): Promise<void> {
  const endpoint = state.endpoint;
  byId('deliveries-panel').hidden = endpoint === null;
  if (!endpoint) return;
  byId('deliveries-endpoint').textContent = endpoint.url;
  const [{ deliveries }, { events }] = await Promise.all([
    api<{ deliveries: DeliveryJson[] }>(key, 'GET', `/v1/webhooks/${encodeURIComponent(endpoint.id)}/deliveries?limit=50`),
    api<{ events: { id: string; type: string }[] }>(key, 'GET', '/v1/webhooks/events?limit=200'),
  ]);
  const typeOf = new Map(events.map((event) => [event.id, event.type]));
  fillTable('deliveries', deliveries.map((delivery) => h('tr', { 'data-id': delivery.id, 'data-event': delivery.event_id, 'data-status': delivery.status, 'data-manual': String(delivery.manual) },
    cell(typeOf.get(delivery.event_id) ?? '?'),
    cell(delivery.event_id, 'mono'),
    stateCell(delivery.status),
    cell(String(delivery.attempts), 'num'),
    cell(delivery.last_status_code !== null ? `HTTP ${delivery.last_status_code}` : delivery.last_error ?? '—'),
    cell(`${when(delivery.created_at)}${delivery.manual ? ' (redelivery)' : ''}`),
    h('td', {}, button('Redeliver', async () => {
      await api(key, 'POST', `/v1/webhooks/${encodeURIComponent(endpoint.id)}/redeliver`, { event_id: delivery.event_id });
      say(`event ${delivery.event_id} queued again`, 'ok');
      await refreshDeliveries(key);
    }, { 'data-action': 'redeliver' })),
  )), 'No deliveries yet.');
}

// ---- devnet wallets ----

async function refreshWallets(key: string): Promise<void> {
  const { wallets } = await api<{ wallets: { name: string; pubkey: string; balance_msat: string }[] }>(key, 'GET', '/v1/devnet/wallets');
  fillTable('wallets', wallets.map((wallet) => h('tr', { 'data-id': wallet.name, 'data-msat': wallet.balance_msat },
    cell(wallet.name),
    cell(sats(wallet.balance_msat), 'num'),
    cell(short(wallet.pubkey, 20), 'mono'),
  )), 'No wallets.');
  const select = byId<HTMLSelectElement>('devnet-wallet');
  const chosen = select.value;
  if (select.options.length !== wallets.length) {
    select.replaceChildren(...wallets.map((wallet) => h('option', { value: wallet.name }, wallet.name)));
    select.value = wallets.some((wallet) => wallet.name === chosen) ? chosen : (wallets[0]?.name ?? '');
  }
}

async function payFromDevnet(paymentRequest: string): Promise<void> {
  const wallet = byId<HTMLSelectElement>('devnet-wallet').value || 'alice';
  const paid = await api<{ amount_msat: string; fee_msat: string; payment_hash: string }>(state.appKey, 'POST', '/v1/devnet/pay', { payment_request: paymentRequest, wallet });
  const line = byId('devnet-pay-result');
  line.textContent = `${wallet} paid ${sats(paid.amount_msat)} (fee ${sats(paid.fee_msat)}), payment hash ${paid.payment_hash}`;
  line.dataset.paymentHash = paid.payment_hash;
  say(`paid ${sats(paid.amount_msat)} from ${wallet}`, 'ok');
  await refreshAppData();
}

// ---- wiring ----

onSubmit('admin-form', async () => {
  await signIn('admin', inputValue('admin-key'));
  byId<HTMLInputElement>('admin-key').value = '';
});
onSubmit('app-form', async () => {
  await signIn('app', inputValue('app-key'));
  byId<HTMLInputElement>('app-key').value = '';
});
byId('sign-out').addEventListener('click', () => {
  state.adminKey = null;
  state.appKey = null;
  state.newKey = null;
  keyStore.set('admin', null);
  keyStore.set('app', null);
  // Reload so no key stays in this page's memory either.
  location.reload();
});
onSubmit('create-app-form', async () => {
  const created = await api<{ id: string; name: string; api_key: string }>(state.adminKey, 'POST', '/v1/apps', { name: inputValue('app-name') });
  byId<HTMLInputElement>('app-name').value = '';
  showNewKey(created, created.api_key);
  say(`app ${created.name} created`, 'ok');
  await refreshApps();
});
byId('use-new-key').addEventListener('click', () => {
  const key = state.newKey;
  if (key) void busy(byId<HTMLButtonElement>('use-new-key'), () => signIn('app', key));
});
onSubmit('invoice-form', async () => {
  const invoice = await api<InvoiceJson>(state.appKey, 'POST', '/v1/invoices', {
    amount_msat: inputValue('invoice-amount'),
    description: inputValue('invoice-description'),
    idempotency_key: freshKey('dash-'),
  });
  const box = byId('invoice-created');
  box.hidden = false;
  byId<HTMLTextAreaElement>('invoice-request').value = invoice.payment_request;
  byId('invoice-qr').replaceWith(Object.assign(qrImage(invoice.payment_request), { id: 'invoice-qr' }));
  await refreshAppData();
});
onSubmit('webhook-form', async () => {
  const types = inputValue('webhook-events').split(/[\s,]+/).filter((type) => type !== '');
  const created = await api<{ id: string; url: string; secret: string }>(state.appKey, 'POST', '/v1/webhooks', { url: inputValue('webhook-url'), event_types: types });
  byId('webhook-secret-box').hidden = false;
  byId('webhook-secret-endpoint').textContent = created.url;
  byId('webhook-secret').textContent = created.secret;
  state.endpoint = { id: created.id, url: created.url };
  byId<HTMLInputElement>('webhook-url').value = '';
  await refreshAppData();
});
onSubmit('clock-form', async () => {
  const seconds = Number(inputValue('clock-seconds'));
  const moved = await api<{ now: string; advanced_s: number }>(state.adminKey, 'POST', '/v1/devnet/clock/advance', { seconds });
  const line = byId('clock-result');
  line.textContent = `Moved ${duration(moved.advanced_s)} forward: Sluice's clock now reads ${when(moved.now)}.`;
  line.dataset.now = moved.now;
  await refreshAppData();
});
onSubmit('devnet-pay-form', async () => {
  await payFromDevnet(inputValue('devnet-invoice'));
  byId<HTMLTextAreaElement>('devnet-invoice').value = '';
});

void busy(null, render);
window.setInterval(() => {
  if (state.appKey && !document.hidden) void refreshAppData();
}, 2000);
