/**
 * Plans and subscriptions on the merchant dashboard, shown only when the server offers
 * them (GET /v1/plans answers): a server without the subscriptions module hides the section.
 * Create a plan, subscribe a customer to it (the payer token is shown once, to hand over),
 * list subscriptions with their status and paid-through time, cancel.
 */
import { api, type ApiCallError } from './api.js';
import { busy, byId, cell, fillTable, h, inputValue, onSubmit, say, stateCell } from './dom.js';
import { duration, sats, when } from './format.js';

let available = false;
let appKey: string | null = null;

interface PlanJson {
  id: string; name: string; price_msat_per_increment: string; rate_msat_per_s: string; rate_kind: string; increment_s: number;
  prepayment_s: number; prepayment_msat: string; grace_s: number; contract_s: number | null; trial_s: number; min_settlement_msat: string;
}
interface SubscriptionJson {
  id: string; plan_id: string; plan: PlanJson; status: string; balance_msat: string; paid_through: string | null; time_left_s: number | null;
  created_at: string; ended_at: string | null; refund: { status: string; amount_msat: string };
}

const FINAL = new Set(['cancelled', 'expired']);

function rateText(plan: PlanJson): string {
  return plan.rate_kind === 'per_second'
    ? `${sats(plan.rate_msat_per_s)}/s (${sats(plan.price_msat_per_increment)} per ${duration(plan.increment_s)})`
    : `${sats(plan.price_msat_per_increment)} per ${duration(plan.increment_s)}`;
}

export async function initSubscriptions(key: string): Promise<void> {
  appKey = key;
  try {
    await api(key, 'GET', '/v1/plans');
    available = true;
  } catch (error) {
    if ((error as ApiCallError).code !== 'not_found') throw error;
    available = false;
  }
  byId('subscriptions-section').hidden = !available;
}

export async function refreshSubscriptions(key: string): Promise<void> {
  if (!available) return;
  await Promise.all([refreshPlans(key), refreshSubscriptionList(key)]);
}

async function refreshPlans(key: string): Promise<void> {
  const { plans } = await api<{ plans: PlanJson[] }>(key, 'GET', '/v1/plans');
  fillTable('plans', plans.map((plan) => h('tr', { 'data-id': plan.id, 'data-name': plan.name },
    cell(plan.name),
    cell(plan.id, 'mono'),
    cell(rateText(plan)),
    cell(duration(plan.increment_s)),
    cell(`${duration(plan.prepayment_s)} (${sats(plan.prepayment_msat)})`),
    cell(duration(plan.grace_s)),
    cell(plan.contract_s === null ? 'none' : duration(plan.contract_s)),
    h('td', {}, subscribeButton(key, plan)),
  )), 'No plans yet.');
}

function subscribeButton(key: string, plan: PlanJson): HTMLButtonElement {
  const button = h('button', { type: 'button', class: 'secondary', 'data-action': 'subscribe' }, 'Subscribe a customer');
  button.addEventListener('click', () => void busy(button, async () => {
    const created = await api<SubscriptionJson & { payer_token: string }>(key, 'POST', '/v1/subscriptions', { plan_id: plan.id });
    byId('new-subscription').hidden = false;
    byId('new-subscription-id').textContent = created.id;
    byId('new-subscription-token').textContent = created.payer_token;
    say(`subscription ${created.id} created: hand the payer token to the customer (they open /me/ with it)`, 'ok');
    await refreshSubscriptionList(key);
  }));
  return button;
}

async function refreshSubscriptionList(key: string): Promise<void> {
  const { subscriptions } = await api<{ subscriptions: SubscriptionJson[] }>(key, 'GET', '/v1/subscriptions?limit=100');
  fillTable('subscriptions', subscriptions.map((subscription) => h('tr', { 'data-id': subscription.id, 'data-status': subscription.status, 'data-msat': subscription.balance_msat },
    cell(subscription.id, 'mono'),
    cell(subscription.plan.name),
    stateCell(subscription.status),
    cell(sats(subscription.balance_msat), 'num balance'),
    cell(subscription.paid_through === null ? '—' : when(subscription.paid_through), 'paid-through'),
    cell(when(subscription.created_at)),
    h('td', {}, FINAL.has(subscription.status) ? null : cancelButton(key, subscription)),
  )), 'No subscriptions yet.');
}

function cancelButton(key: string, subscription: SubscriptionJson): HTMLButtonElement {
  const button = h('button', { type: 'button', class: 'danger', 'data-action': 'cancel' }, 'Cancel');
  button.addEventListener('click', () => void busy(button, async () => {
    if (!confirm(`Cancel subscription ${subscription.id}? The unused balance is kept for the customer's refund.`)) return;
    await api(key, 'POST', `/v1/subscriptions/${encodeURIComponent(subscription.id)}/cancel`, {});
    say(`subscription ${subscription.id} cancelled`, 'ok');
    await refreshSubscriptionList(key);
  }));
  return button;
}

onSubmit('plan-form', async () => {
  const optional = (id: string, field: string, asNumber: boolean): Record<string, unknown> => {
    const value = inputValue(id);
    if (value === '') return {};
    return { [field]: asNumber ? Number(value) : value };
  };
  const plan = await api<PlanJson>(appKey, 'POST', '/v1/plans', {
    name: inputValue('plan-name'),
    rate_msat_per_s: inputValue('plan-rate'),
    increment_s: Number(inputValue('plan-increment')),
    prepayment_s: Number(inputValue('plan-prepayment')),
    grace_s: Number(inputValue('plan-grace')),
    ...optional('plan-contract', 'contract_s', true),
    ...optional('plan-min-settlement', 'min_settlement_msat', false),
    ...optional('plan-trial', 'trial_s', true),
  });
  byId<HTMLInputElement>('plan-name').value = '';
  say(`plan ${plan.name} created`, 'ok');
  if (appKey) await refreshPlans(appKey);
});
