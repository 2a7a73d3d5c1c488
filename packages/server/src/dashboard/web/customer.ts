/**
 * The customer page (/me/): the payer opens it with the payer tokens the merchant handed
 * out (one per stream or subscription; they stay in this tab's sessionStorage) and sees
 * each one's balance and time left, tops up with an invoice and its QR code (or, on the
 * devnet, pays it from a devnet wallet), pauses, and closes or cancels to get the unused
 * balance refunded.
 */
import { api, freshKey, keyStore, session, type ApiCallError, type Session } from './api.js';
import { busy, byId, h, inputValue, onSubmit, qrImage, say } from './dom.js';
import { duration, sats, satsInput, when } from './format.js';
import { openSubscription } from './customer-subscriptions.js';
import { chosenWallet, refundChoice, shared, type Item } from './customer-item.js';

const TOKENS = 'payer-tokens';

const state = {
  shared,
  items: new Map<string, Item>(),
};
(window as unknown as { customer: unknown }).customer = { state, refreshedAt: 0 };
const markRefreshed = () => ((window as unknown as { customer: { refreshedAt: number } }).customer.refreshedAt = Date.now());

function storedTokens(): string[] {
  try {
    const parsed: unknown = JSON.parse(keyStore.get(TOKENS) ?? '[]');
    return Array.isArray(parsed) ? parsed.filter((token): token is string => typeof token === 'string') : [];
  } catch {
    return [];
  }
}

function storeTokens(): void {
  keyStore.set(TOKENS, JSON.stringify([...state.items.keys()]));
}

// ---- streams ----

interface StreamJson {
  id: string; status: string; meter: string; balance_msat: string; held_msat: string; rate_msat_per_s: string; maximum_msat: string;
  expires_at: string | null; payout: Record<string, unknown> | null; metadata: string; created_at: string; closed_at: string | null; prices: Record<string, string>;
}
interface StreamEvent { seq: number; type: string; at: string; amount_msat?: string; payment_request?: string; payment_hash?: string; expires_at?: string; by?: string; reason?: string }
interface Invoice { payment_request: string; payment_hash: string; amount_msat: string; expires_at: string }

function openStream(token: string, who: Session): Item {
  const streamId = who.stream_id as string;
  const base = `/v1/streams/${encodeURIComponent(streamId)}`;
  let lastSeq = 0;
  let invoice: Invoice | null = null;
  let payoutAsked: string | null = null;
  let refunded = 0n;
  let stream: StreamJson | null = null;

  const balance = h('dd', { class: 'balance', 'data-msat': '0' });
  const status = h('dd', { class: 'stream-status' });
  const left = h('dd', { class: 'time-left' });
  const terms = h('dd', { class: 'terms' });
  const topUpBox = h('div', { class: 'invoice top-up', hidden: true });
  const topUpAmount = h('input', { class: 'top-up-amount', inputmode: 'numeric', pattern: '[0-9]+', placeholder: 'sats', 'aria-label': 'top-up amount in sats' });
  const refundLine = h('p', { class: 'refund', hidden: true, 'data-msat': '0' });
  const payoutBox = h('div', { class: 'payout-invoice', hidden: true });
  const events = h('ol', { class: 'events', reversed: true });
  const pauseButton = h('button', { type: 'button', class: 'secondary pause' }, 'Pause');
  const closeButton = h('button', { type: 'button', class: 'danger close' }, 'Close and refund');
  const createTopUp = h('button', { type: 'button', class: 'secondary create-top-up' }, 'Create a top-up invoice');
  const topUpRow = h('div', { class: 'row' }, h('label', {}, 'Top up (sats)', topUpAmount), createTopUp);

  const element = h('section', { class: 'card item stream', 'data-kind': 'stream', 'data-id': streamId },
    h('h2', {}, `Stream with ${who.app?.name ?? 'the merchant'}`, ' ', h('small', { class: 'mono' }, streamId)),
    h('dl', { class: 'balances' },
      h('dt', {}, 'Status'), status,
      h('dt', {}, 'Balance'), balance,
      h('dt', {}, 'Time left'), left,
      h('dt', {}, 'Prices'), terms),
    topUpBox,
    topUpRow,
    payoutBox,
    refundLine,
    h('div', { class: 'controls' }, pauseButton, closeButton),
    h('details', {}, h('summary', {}, 'Events'), events),
  );

  const log = (event: StreamEvent): void => {
    const amount = event.amount_msat === undefined ? '' : ` ${sats(event.amount_msat)}`;
    events.prepend(h('li', {}, `${when(event.at)} ${event.type}${amount}${event.by ? ` by ${event.by}` : ''}${event.reason ? ` (${event.reason})` : ''}`));
    while (events.children.length > 50) events.lastElementChild?.remove();
  };

  const fold = (event: StreamEvent): void => {
    lastSeq = Math.max(lastSeq, event.seq);
    log(event);
    if (event.type === 'invoice' && event.payment_request && event.payment_hash && event.amount_msat && event.expires_at) {
      invoice = { payment_request: event.payment_request, payment_hash: event.payment_hash, amount_msat: event.amount_msat, expires_at: event.expires_at };
    } else if (event.type === 'funded' && invoice?.payment_hash === event.payment_hash) {
      invoice = null;
    } else if (event.type === 'payout_invoice_needed' && event.amount_msat) {
      payoutAsked = event.amount_msat;
    } else if (event.type === 'settled' && event.amount_msat) {
      payoutAsked = null;
      refunded += BigInt(event.amount_msat);
    }
  };

  const renderInvoice = (): void => {
    const current = invoice && stream?.status === 'open' && Date.parse(invoice.expires_at) > Date.now() ? invoice : null;
    topUpBox.hidden = current === null;
    if (!current) {
      topUpBox.replaceChildren();
      return;
    }
    if (topUpBox.dataset.paymentHash === current.payment_hash) return;
    topUpBox.dataset.paymentHash = current.payment_hash;
    const payDevnet = h('button', { type: 'button', class: 'pay-devnet' }, 'Pay from the devnet wallet');
    payDevnet.addEventListener('click', () => void busy(payDevnet, async () => {
      const wallet = chosenWallet();
      await api(token, 'POST', '/dashboard/api/devnet/pay', { payment_request: current.payment_request, wallet });
      say(`paid ${sats(current.amount_msat)} from ${wallet}`, 'ok');
      await refresh();
    }));
    topUpBox.replaceChildren(
      qrImage(current.payment_request),
      h('div', {},
        h('p', {}, `Top-up invoice: ${sats(current.amount_msat)}, expires ${when(current.expires_at)}`),
        h('textarea', { readonly: true, rows: '4', class: 'top-up-request', 'aria-label': 'the top-up invoice' }, current.payment_request),
        shared.devnet ? payDevnet : null),
    );
  };

  const renderPayoutAsked = (): void => {
    payoutBox.hidden = payoutAsked === null;
    if (payoutAsked === null || payoutBox.dataset.msat === payoutAsked) return;
    const asked = payoutAsked;
    payoutBox.dataset.msat = asked;
    const input = h('textarea', { rows: '3', class: 'payout-request', 'aria-label': 'your invoice for the refund' });
    const send = h('button', { type: 'button' }, 'Send my invoice');
    send.addEventListener('click', () => void busy(send, async () => {
      await api(token, 'POST', `${base}/payout`, { payment_request: input.value.trim() });
      await refresh();
    }));
    payoutBox.replaceChildren(h('p', {}, `The refund of ${sats(asked)} needs an invoice of exactly that amount from your wallet:`), input, send);
  };

  const render = (): void => {
    if (!stream) return;
    const balanceMsat = BigInt(stream.balance_msat);
    balance.textContent = sats(balanceMsat);
    balance.dataset.msat = stream.balance_msat;
    status.replaceChildren(h('span', { class: `state-${stream.status}`, 'data-state': stream.status }, stream.status),
      stream.rate_msat_per_s === '0' ? '' : `, meter ${stream.meter}`);
    const rate = BigInt(stream.rate_msat_per_s);
    const parts: string[] = [];
    if (stream.status === 'closed') parts.push(`closed ${when(stream.closed_at)}`);
    else {
      if (rate > 0n) {
        const seconds = Number((balanceMsat + BigInt(stream.maximum_msat)) / rate);
        parts.push(stream.meter === 'running' ? `${duration(seconds)} at ${sats(rate)}/s` : `${duration(seconds)} of metering (${stream.meter})`);
      }
      if (stream.expires_at) parts.push(`ends in ${duration((Date.parse(stream.expires_at) - Date.now()) / 1000)}`);
      if (parts.length === 0) parts.push('until the balance is used');
    }
    left.textContent = parts.join('; ');
    const prices = Object.entries(stream.prices).map(([name, price]) => `${name} ${sats(price)}`);
    if (rate > 0n) prices.push(`${sats(rate)} per second`);
    terms.textContent = prices.join(', ') || '—';
    const open = stream.status === 'open';
    pauseButton.hidden = !open || rate === 0n || stream.meter === 'stopped';
    pauseButton.textContent = stream.meter === 'paused' ? 'Resume' : 'Pause';
    closeButton.hidden = !open;
    topUpRow.hidden = !open;
    refundLine.hidden = refunded === 0n;
    refundLine.textContent = `Refund of ${sats(refunded)} paid to you.`;
    refundLine.dataset.msat = refunded.toString();
    renderInvoice();
    renderPayoutAsked();
  };

  const refresh = async (): Promise<void> => {
    // Events first, then the stream: the balance shown is never older than the events.
    const { events: fresh } = await api<{ events: StreamEvent[] }>(token, 'GET', `${base}/events?after_seq=${lastSeq}`);
    stream = await api<StreamJson>(token, 'GET', base);
    for (const event of fresh) fold(event);
    render();
  };

  pauseButton.addEventListener('click', () => void busy(pauseButton, async () => {
    await api(token, 'POST', `${base}/meter`, { action: stream?.meter === 'paused' ? 'resume' : 'pause' });
    await refresh();
  }));
  closeButton.addEventListener('click', () => void busy(closeButton, async () => {
    const choice = refundChoice();
    if (choice && stream?.payout === null && BigInt(stream.balance_msat) > 0n) await api(token, 'POST', `${base}/payout`, { destination: choice });
    await api(token, 'POST', `${base}/close`);
    say('closed: the unused balance is on its way back', 'ok');
    await refresh();
  }));
  createTopUp.addEventListener('click', () => void busy(createTopUp, async () => {
    const created = await api<Invoice>(token, 'POST', '/dashboard/api/top-up', { amount_msat: satsInput(topUpAmount.value.trim()), idempotency_key: freshKey('me-') });
    invoice = created;
    topUpAmount.value = '';
    render();
  }));

  return { token, id: streamId, element, refresh };
}

// ---- the page ----

async function add(token: string): Promise<void> {
  if (state.items.has(token)) return;
  const who = await session(token);
  if (who.kind !== 'payer') throw new Error('this is not a payer token (pt_... or spt_...)');
  shared.devnet = who.devnet;
  if (shared.wallets.length === 0) shared.wallets = who.devnet_wallets;
  if (who.stream_id === null && who.subscription_id === null) throw new Error('this payer token opens nothing this page can show');
  const item = who.stream_id !== null ? openStream(token, who) : await openSubscription(token, who);
  state.items.set(token, item);
  byId('items').append(item.element);
  storeTokens();
  layout();
  await item.refresh();
}

function layout(): void {
  byId('sign-out').hidden = state.items.size === 0;
  byId('devnet-badge').hidden = !shared.devnet;
  byId('refund-to').hidden = state.items.size === 0;
  const walletLabel = byId('refund-wallet').parentElement as HTMLElement;
  walletLabel.hidden = !shared.devnet;
  const select = byId<HTMLSelectElement>('refund-wallet');
  if (shared.devnet && select.options.length === 0) {
    select.replaceChildren(
      h('option', { value: '' }, '(none: ask me)'),
      ...shared.wallets.map((wallet) => h('option', { value: wallet.name, selected: wallet.name === 'alice' }, wallet.name)),
    );
  }
}

let refreshing = false;
async function refreshAll(): Promise<void> {
  if (refreshing) return;
  refreshing = true;
  try {
    for (const item of state.items.values()) {
      try {
        await item.refresh();
      } catch (error) {
        if ((error as ApiCallError).status === 401) {
          item.element.remove();
          state.items.delete(item.token);
          storeTokens();
          say('a payer token is no longer valid and was forgotten');
        } else say((error as Error).message);
      }
    }
    markRefreshed();
  } finally {
    refreshing = false;
  }
}

onSubmit('token-form', async () => {
  await add(inputValue('payer-token'));
  byId<HTMLInputElement>('payer-token').value = '';
});
byId('sign-out').addEventListener('click', () => {
  keyStore.set(TOKENS, null);
  location.reload();
});

void busy(null, async () => {
  for (const token of storedTokens()) await add(token);
});
window.setInterval(() => {
  if (!document.hidden) void refreshAll();
}, 2000);
