/** The customer's side of subscriptions (docs/subscriptions.md). */
export {
  SluiceSubscriber,
  type Subscription,
  type SubscriptionAllowance,
  type SubscriptionRefund,
  type SluiceSubscriberEvents,
  type SluiceSubscriberOptions,
} from './subscriber.js';
