/**
 * A subscription on the customer page (a payer token spt_...): status, balance, paid-through
 * time and time left, the prepayment invoice with its QR code (or a new one on request),
 * cancel with the refund to the destination chosen at the top of the page, and the refund's
 * fate. Subscriptions are not paused: cancelling is the customer's stop, at any moment.
 */
import { api, type Session } from './api.js';
import { busy, h, qrImage, say } from './dom.js';
import { duration, sats, satsInput, when } from './format.js';
import { chosenWallet, refundChoice, shared, type Item } from './customer-item.js';

interface SubscriptionJson {
  id: string;
  status: string;
  plan: { name: string; rate_msat_per_s: string; price_msat_per_increment: string; rate_kind: string; increment_s: number; prepayment_s: number; grace_s: number; contract_s: number | null };
  balance_msat: string;
  owed_msat: string;
  paid_through: string | null;
  time_left_s: number | null;
  grace_ends_at: string | null;
  contract_ends_at: string | null;
  trial_ends_at: string | null;
  ended_at: string | null;
  ended_by: string | null;
  invoice: { payment_request: string; payment_hash: string; amount_msat: string; expires_at: string } | null;
  refund: { status: string; amount_msat: string; payment_hash: string | null };
}

const FINAL = new Set(['cancelled', 'expired']);

/** The page's refund choice in the subscriptions API's shape. */
function refundBody(): Record<string, string> | null {
  const choice = refundChoice();
  if (choice === null) return null;
  return 'keysend' in choice ? { keysend_pubkey: choice.keysend.pubkey } : { lightning_address: choice.lightning_address };
}

export async function openSubscription(token: string, who: Session): Promise<Item> {
  const id = who.subscription_id as string;
  const base = `/v1/subscriptions/${encodeURIComponent(id)}`;
  let subscription: SubscriptionJson | null = null;

  const status = h('dd', { class: 'subscription-status' });
  const balance = h('dd', { class: 'balance', 'data-msat': '0' });
  const paidThrough = h('dd', { class: 'paid-through' });
  const left = h('dd', { class: 'time-left' });
  const terms = h('dd', { class: 'terms' });
  const title = h('span', {}, `Subscription with ${who.app?.name ?? 'the merchant'}`);
  const invoiceBox = h('div', { class: 'invoice top-up', hidden: true });
  const amount = h('input', { class: 'top-up-amount', inputmode: 'numeric', pattern: '[0-9]*', placeholder: 'sats (empty: what is due)', 'aria-label': 'amount in sats' });
  const payButton = h('button', { type: 'button', class: 'secondary create-top-up' }, 'Get an invoice');
  const cancelButton = h('button', { type: 'button', class: 'danger cancel' }, 'Cancel and refund');
  const refundLine = h('p', { class: 'refund', hidden: true, 'data-msat': '0' });
  const refundAsk = h('div', { class: 'payout-invoice', hidden: true });
  const payRow = h('div', { class: 'row pay' }, h('label', {}, 'Pay (sats)', amount), payButton);

  const element = h('section', { class: 'card item subscription', 'data-kind': 'subscription', 'data-id': id },
    h('h2', {}, title, ' ', h('small', { class: 'mono' }, id)),
    h('dl', { class: 'balances' },
      h('dt', {}, 'Status'), status,
      h('dt', {}, 'Balance'), balance,
      h('dt', {}, 'Paid through'), paidThrough,
      h('dt', {}, 'Time left'), left,
      h('dt', {}, 'Plan'), terms),
    invoiceBox,
    payRow,
    refundAsk,
    refundLine,
    h('div', { class: 'controls' }, cancelButton),
  );

  const renderInvoice = (): void => {
    const invoice = subscription && !FINAL.has(subscription.status) ? subscription.invoice : null;
    invoiceBox.hidden = invoice === null;
    if (invoice === null) {
      invoiceBox.replaceChildren();
      delete invoiceBox.dataset.paymentHash;
      return;
    }
    if (invoiceBox.dataset.paymentHash === invoice.payment_hash) return;
    invoiceBox.dataset.paymentHash = invoice.payment_hash;
    const payDevnet = h('button', { type: 'button', class: 'pay-devnet' }, 'Pay from the devnet wallet');
    payDevnet.addEventListener('click', () => void busy(payDevnet, async () => {
      const wallet = chosenWallet();
      await api(token, 'POST', '/dashboard/api/devnet/pay', { payment_request: invoice.payment_request, wallet });
      say(`paid ${sats(invoice.amount_msat)} from ${wallet}`, 'ok');
      await refresh();
    }));
    invoiceBox.replaceChildren(
      qrImage(invoice.payment_request),
      h('div', {},
        h('p', {}, `Invoice: ${sats(invoice.amount_msat)}, expires ${when(invoice.expires_at)}`),
        h('textarea', { readonly: true, rows: '4', class: 'top-up-request', 'aria-label': 'the invoice' }, invoice.payment_request),
        shared.devnet ? payDevnet : null),
    );
  };

  const renderRefund = (): void => {
    if (!subscription) return;
    const refund = subscription.refund;
    const shown = refund.status !== 'none' && refund.amount_msat !== '0';
    refundLine.hidden = !shown || refund.status === 'held';
    refundLine.dataset.msat = refund.status === 'succeeded' ? refund.amount_msat : '0';
    refundLine.dataset.state = refund.status;
    refundLine.textContent = refund.status === 'succeeded' ? `Refund of ${sats(refund.amount_msat)} paid to you.`
      : refund.status === 'pending' ? `Refund of ${sats(refund.amount_msat)} on its way.`
        : `The refund of ${sats(refund.amount_msat)} failed; give another destination below.`;
    const ask = shown && (refund.status === 'held' || refund.status === 'failed');
    refundAsk.hidden = !ask;
    if (!ask || refundAsk.dataset.msat === refund.amount_msat) return;
    refundAsk.dataset.msat = refund.amount_msat;
    const input = h('textarea', { rows: '3', class: 'payout-request', 'aria-label': 'your invoice for the refund' });
    const send = h('button', { type: 'button' }, 'Refund to this invoice');
    const toChoice = h('button', { type: 'button', class: 'secondary' }, 'Refund to the destination above');
    send.addEventListener('click', () => void busy(send, async () => {
      await api(token, 'POST', `${base}/refund`, { refund: { payment_request: input.value.trim() } });
      await refresh();
    }));
    toChoice.addEventListener('click', () => void busy(toChoice, async () => {
      const destination = refundBody();
      if (destination === null) throw new Error('choose a wallet or a Lightning address at the top of the page first');
      await api(token, 'POST', `${base}/refund`, { refund: destination });
      await refresh();
    }));
    refundAsk.replaceChildren(h('p', {}, `Your refund of ${sats(refund.amount_msat)} waits for a destination: an invoice for exactly that amount (or without amount).`), input, send, toChoice);
  };

  const render = (): void => {
    if (!subscription) return;
    const plan = subscription.plan;
    title.textContent = `${plan.name} (${who.app?.name ?? 'the merchant'})`;
    status.replaceChildren(h('span', { class: `state-${subscription.status}`, 'data-state': subscription.status }, subscription.status),
      subscription.status === 'past_due' && subscription.grace_ends_at ? ` until ${when(subscription.grace_ends_at)}, then suspended` : '',
      subscription.owed_msat !== '0' ? `, owes ${sats(subscription.owed_msat)}` : '',
      subscription.ended_by ? ` by the ${subscription.ended_by}` : '');
    balance.textContent = sats(subscription.balance_msat);
    balance.dataset.msat = subscription.balance_msat;
    paidThrough.textContent = subscription.paid_through === null ? '—' : when(subscription.paid_through);
    paidThrough.dataset.at = subscription.paid_through ?? '';
    left.textContent = FINAL.has(subscription.status) ? `ended ${when(subscription.ended_at)}`
      : subscription.time_left_s === null ? '—' : duration(subscription.time_left_s);
    terms.textContent = `${plan.rate_kind === 'per_second' ? `${sats(plan.rate_msat_per_s)}/s` : `${sats(plan.price_msat_per_increment)} per ${duration(plan.increment_s)}`}, billed every ${duration(plan.increment_s)}, ${duration(plan.prepayment_s)} prepaid, ${duration(plan.grace_s)} grace${plan.contract_s === null ? '' : `, contract ${duration(plan.contract_s)}`}`;
    const open = !FINAL.has(subscription.status);
    cancelButton.hidden = !open;
    payRow.hidden = !open;
    renderInvoice();
    renderRefund();
  };

  const refresh = async (): Promise<void> => {
    subscription = await api<SubscriptionJson>(token, 'GET', base);
    render();
  };

  payButton.addEventListener('click', () => void busy(payButton, async () => {
    const typed = amount.value.trim();
    subscription = await api<SubscriptionJson>(token, 'POST', `${base}/pay`, typed === '' ? {} : { amount_msat: satsInput(typed) });
    amount.value = '';
    render();
  }));
  cancelButton.addEventListener('click', () => void busy(cancelButton, async () => {
    const destination = refundBody();
    const cancelled = await api<SubscriptionJson & { refund_error: { code: string; message: string } | null }>(token, 'POST', `${base}/cancel`, destination === null ? {} : { refund: destination });
    subscription = cancelled;
    if (cancelled.refund_error) say(`cancelled, but the refund could not start: ${cancelled.refund_error.code}: ${cancelled.refund_error.message}`);
    else say('cancelled: the unused balance is refunded', 'ok');
    render();
  }));

  return { token, id, element, refresh };
}
