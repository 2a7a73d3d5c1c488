/**
 * Building the pages from data without ever parsing data as HTML: elements are created one
 * by one and text goes in as text nodes. (The CSP forbids inline scripts anyway; this keeps
 * a merchant-chosen name or a webhook's answer from becoming markup at all.)
 */

export type Child = Node | string | null | undefined | false;
type Attributes = Record<string, string | boolean | undefined | ((event: Event) => void)>;

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, attributes: Attributes = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) continue;
    if (typeof value === 'function') element.addEventListener(name.replace(/^on/, ''), value);
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return element;
}

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing from the page`);
  return element as T;
}

export function inputValue(id: string): string {
  return byId<HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement>(id).value.trim();
}

/** Replaces a table's body rows. */
export function fillTable(id: string, rows: HTMLTableRowElement[], empty: string): void {
  const table = byId<HTMLTableElement>(id);
  const body = table.tBodies[0] ?? table.appendChild(document.createElement('tbody'));
  const columns = table.tHead?.rows[0]?.cells.length ?? 1;
  body.replaceChildren(...(rows.length > 0 ? rows : [h('tr', { class: 'empty' }, h('td', { colspan: String(columns), class: 'hint' }, empty))]));
}

export function cell(text: string, className?: string): HTMLTableCellElement {
  return h('td', className === undefined ? {} : { class: className }, text);
}

/** A state word styled by its value (state-active, state-failed...). */
export function stateCell(state: string): HTMLTableCellElement {
  return h('td', {}, h('span', { class: `state-${state.replace(/[^a-z_]/g, '')}`, 'data-state': state }, state));
}

let statusTimer: number | undefined;
/** A line at the top of the page: errors in red, confirmations in green. */
export function say(text: string, kind: 'error' | 'ok' = 'error'): void {
  const line = byId('status');
  line.textContent = text;
  line.className = `status ${kind}`;
  window.clearTimeout(statusTimer);
  if (kind === 'ok') statusTimer = window.setTimeout(() => (line.textContent = ''), 5000);
}

/** Runs a button's action with the button disabled, reporting failure on the page. */
export async function busy(button: HTMLButtonElement | null, action: () => Promise<void>): Promise<void> {
  if (button) button.disabled = true;
  try {
    await action();
  } catch (error) {
    say(error instanceof Error ? error.message : String(error));
  } finally {
    if (button) button.disabled = false;
  }
}

export function onSubmit(formId: string, action: (form: HTMLFormElement) => Promise<void>): void {
  const form = byId<HTMLFormElement>(formId);
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void busy(form.querySelector('button[type="submit"]'), () => action(form));
  });
}

export function qrImage(paymentRequest: string, size = 180): HTMLImageElement {
  return h('img', {
    src: `/dashboard/qr.svg?data=${encodeURIComponent('lightning:' + paymentRequest)}`,
    alt: 'QR code of the invoice',
    width: String(size),
    height: String(size),
    class: 'qr',
  });
}
