/** Subscriptions on the customer page: shown when a payer token opens a subscription. */
import type { Session } from './api.js';
import type { Item } from './customer-item.js';

export async function openSubscription(_token: string, _who: Session): Promise<Item> {
  throw new Error('this payer token opens nothing this page knows how to show');
}
