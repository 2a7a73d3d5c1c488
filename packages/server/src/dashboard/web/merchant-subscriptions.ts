/**
 * Plans and subscriptions on the merchant dashboard, shown only when the server offers
 * them (GET /v1/plans answers): a server without the subscriptions module hides the section.
 */
import { api, type ApiCallError } from './api.js';
import { byId } from './dom.js';

let available = false;

export async function initSubscriptions(key: string): Promise<void> {
  try {
    await api(key, 'GET', '/v1/plans');
    available = true;
  } catch (error) {
    if ((error as ApiCallError).code !== 'not_found') throw error;
    available = false;
  }
  byId('subscriptions-section').hidden = !available;
}

export async function refreshSubscriptions(_key: string): Promise<void> {
  if (!available) return;
}
