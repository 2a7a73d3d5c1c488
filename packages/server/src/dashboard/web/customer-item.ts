/** What the customer page shows per payer token (a stream or a subscription), and what the cards share. */
import { byId, inputValue } from './dom.js';

export interface Item {
  token: string;
  id: string;
  element: HTMLElement;
  refresh(): Promise<void>;
}

/** A payout or refund destination as the API takes it. */
export type RefundChoice = { keysend: { pubkey: string } } | { lightning_address: string };

export interface Wallet {
  name: string;
  pubkey: string;
  balance_msat: string;
}

export const shared = {
  devnet: false,
  wallets: [] as Wallet[],
};

/** Where refunds go, as chosen at the top of the page: a Lightning address, else a devnet wallet, else none (asked later). */
export function refundChoice(): RefundChoice | null {
  const address = inputValue('refund-address');
  if (address !== '') return { lightning_address: address };
  const walletName = byId<HTMLSelectElement>('refund-wallet').value;
  const wallet = shared.wallets.find((candidate) => candidate.name === walletName);
  return wallet ? { keysend: { pubkey: wallet.pubkey } } : null;
}

/** The devnet wallet chosen at the top of the page (pays top-ups there too). */
export function chosenWallet(): string {
  return byId<HTMLSelectElement>('refund-wallet').value || 'alice';
}
