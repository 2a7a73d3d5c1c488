/**
 * The demo businesses of the seed "satoshis per second" (../shared/seeds/001_*.txt),
 * seeded on the devnet by `sluice start` so the dashboards have something to show: one app
 * per business with its plans. Idempotent: an app is found by name, a plan by name within
 * its app. Nothing secret is printed (the apps' keys are not kept; the admin creates keys
 * for them when needed). FAKE MONEY, like everything on the devnet.
 */
import type { AppService } from '../apps/service.js';
import type { PlanInput } from './plans.js';
import type { SubscriptionService } from './service.js';

const HOUR = 3600;
const DAY = 24 * HOUR;

export interface DemoBusiness {
  app: string;
  plans: (PlanInput & { name: string })[];
}

export const DEMO_BUSINESSES: readonly DemoBusiness[] = [
  {
    app: 'Echelon Mobile',
    // Contract 1 month, increment 1 hour, prepayment 1 day: 72 sat an hour.
    plans: [{ name: 'Echelon Mobile: 1 month, billed hourly', rate_msat_per_s: '20', increment_s: HOUR, prepayment_s: DAY, grace_s: DAY, contract_s: 30 * DAY }],
  },
  {
    app: 'Webflix',
    // Per minute of viewing, no contract; prepayment of 6 hours (above the 1,000 sat minimum);
    // paused while nobody watches, for up to a week at a time.
    plans: [{ name: 'Webflix: per minute of viewing', rate_msat_per_s: '50', increment_s: 60, prepayment_s: 6 * HOUR, grace_s: 10 * 60, max_pause_s: 7 * DAY }],
  },
  {
    app: 'Perpetual Insurance',
    // Contract 1 year, increment 1 day, prepayment 1 day: 5,000 sat a day.
    plans: [{ name: 'Perpetual Insurance: 1 year, billed daily', rate_msat_per_increment: '5000000', increment_s: DAY, prepayment_s: DAY, grace_s: 3 * DAY, contract_s: 365 * DAY }],
  },
  {
    app: 'Digital Sea',
    // A server billed per second, no contract; a day prepaid.
    plans: [
      { name: 'Digital Sea: droplet, billed per second', rate_msat_per_s: '12', increment_s: 1, prepayment_s: DAY, grace_s: HOUR },
      { name: 'Digital Sea: large droplet, billed per second', rate_msat_per_s: '48', increment_s: 1, prepayment_s: DAY, grace_s: HOUR },
    ],
  },
  {
    app: 'Pedal Bike Rental',
    // Contract 1 day, increment 1 minute, prepayment 1 hour: 18 sat a minute.
    plans: [{ name: 'Bike rental: 1 day, billed per minute', rate_msat_per_s: '300', increment_s: 60, prepayment_s: HOUR, grace_s: 5 * 60, contract_s: DAY }],
  },
];

/** Creates what is missing; returns how many apps and plans it created. */
export async function seedDemoBusinesses(deps: { apps: AppService; subscriptions: SubscriptionService }): Promise<{ apps: number; plans: number }> {
  let appsCreated = 0;
  let plansCreated = 0;
  const existing = await deps.apps.listApps();
  for (const business of DEMO_BUSINESSES) {
    let app = existing.find((row) => row.name === business.app && row.revokedAt === null);
    if (!app) {
      app = (await deps.apps.createApp(business.app)).app;
      appsCreated += 1;
    }
    const plans = await deps.subscriptions.listPlans(app.id);
    for (const plan of business.plans) {
      if (plans.some((row) => row.name === plan.name)) continue;
      const created = await deps.subscriptions.createPlan(app.id, plan);
      if (!created.ok) throw new Error(`demo plan ${plan.name}: ${created.error} ${created.detail ?? ''}`);
      plansCreated += 1;
    }
  }
  return { apps: appsCreated, plans: plansCreated };
}
