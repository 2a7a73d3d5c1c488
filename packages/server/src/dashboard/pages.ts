/**
 * The dashboards' two HTML shells and their stylesheet. They hold no data: the compiled
 * scripts (dashboard/web) fill them in the browser with text nodes only, so the pages need
 * neither inline scripts nor inline styles and the CSP can forbid both.
 */

const head = (title: string, script: string): string => `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="no-referrer">
  <title>${title}</title>
  <link rel="icon" href="/dashboard/assets/icon.svg">
  <link rel="stylesheet" href="/dashboard/assets/style.css">
  <script type="module" src="/dashboard/assets/${script}"></script>
</head>`;

export const MERCHANT_HTML = `${head('Sluice dashboard', 'merchant.js')}
<body>
<header>
  <h1>Sluice <small>merchant dashboard</small></h1>
  <p class="fake" id="devnet-badge" hidden>devnet — fake money</p>
  <p id="who" class="who"></p>
  <button id="sign-out" type="button" hidden>Sign out</button>
  <nav id="nav" class="nav" hidden>
    <a href="#admin" data-for="admin">Apps and keys</a>
    <a href="#balance-section" data-for="app">Balance</a>
    <a href="#subscriptions-section" data-for="subscriptions">Plans and subscriptions</a>
    <a href="#streams-section" data-for="app">Streams</a>
    <a href="#invoices-section" data-for="app">Invoices</a>
    <a href="#payments-section" data-for="app">Payments</a>
    <a href="#webhooks-section" data-for="app">Webhooks</a>
    <a href="#devnet" data-for="devnet">Devnet wallets</a>
  </nav>
</header>
<p id="status" class="status" role="status" aria-live="polite"></p>
<main>
  <section id="signin" class="card">
    <h2>Sign in</h2>
    <p class="hint">Keys stay in this tab (sessionStorage) and are sent only as the Authorization header.</p>
    <form id="app-form" class="row">
      <label>App API key <input id="app-key" type="password" autocomplete="off" placeholder="sk_..." required></label>
      <button type="submit">Sign in as the app</button>
    </form>
    <form id="admin-form" class="row">
      <label>Admin key <input id="admin-key" type="password" autocomplete="off" placeholder="sa_..." required></label>
      <button type="submit">Sign in as admin</button>
    </form>
  </section>

  <section id="admin" class="card" hidden>
    <h2>Apps and keys <small>(admin)</small></h2>
    <form id="create-app-form" class="row">
      <label>New app <input id="app-name" maxlength="100" placeholder="name" required></label>
      <button type="submit">Create app</button>
    </form>
    <div id="new-key" class="secret" hidden>
      <p>New API key for <b id="new-key-app"></b>, shown only this once:</p>
      <code id="new-key-value"></code>
      <button id="use-new-key" type="button">Sign in as this app</button>
    </div>
    <table id="apps"><thead><tr><th>Name</th><th>Id</th><th>Created</th><th>Status</th><th></th></tr></thead><tbody></tbody></table>
    <div id="keys-panel" hidden>
      <h3>Keys of <span id="keys-app"></span></h3>
      <table id="keys"><thead><tr><th>Prefix</th><th>Id</th><th>Created</th><th>Status</th><th></th></tr></thead><tbody></tbody></table>
    </div>
    <div id="devnet-clock" hidden>
      <h3>Devnet clock <small class="fake">fake money</small></h3>
      <form id="clock-form" class="row">
        <label>Advance by (seconds) <input id="clock-seconds" inputmode="numeric" pattern="[0-9]+" value="3600" required></label>
        <button type="submit">Advance the clock</button>
      </form>
      <p id="clock-result" class="hint">Moves Sluice's clock forward and bills what became due: a month of billing in seconds.</p>
    </div>
  </section>

  <div id="app" hidden>
    <section class="card" id="balance-section">
      <h2>Balance</h2>
      <dl class="balances">
        <dt>Balance</dt><dd id="balance" data-msat="0"></dd>
        <dt>Held by payments in flight</dt><dd id="held" data-msat="0"></dd>
        <dt>Available</dt><dd id="available" data-msat="0"></dd>
      </dl>
    </section>

    <section class="card" id="subscriptions-section" hidden>
      <h2>Plans</h2>
      <form id="plan-form" class="grid">
        <label>Name <input id="plan-name" maxlength="100" required></label>
        <label>Rate (msat per second) <input id="plan-rate" inputmode="numeric" pattern="[0-9]+" required></label>
        <label>Increment (s) <input id="plan-increment" inputmode="numeric" pattern="[0-9]+" value="60" required></label>
        <label>Prepayment (s) <input id="plan-prepayment" inputmode="numeric" pattern="[0-9]+" value="3600" required></label>
        <label>Grace (s) <input id="plan-grace" inputmode="numeric" pattern="[0-9]+" value="600" required></label>
        <label>Contract (s, optional) <input id="plan-contract" inputmode="numeric" pattern="[0-9]*"></label>
        <label>Minimum settlement (msat, optional) <input id="plan-min-settlement" inputmode="numeric" pattern="[0-9]*"></label>
        <label>Trial (s, optional) <input id="plan-trial" inputmode="numeric" pattern="[0-9]*"></label>
        <button type="submit">Create plan</button>
      </form>
      <table id="plans"><thead><tr><th>Name</th><th>Id</th><th>Rate</th><th>Increment</th><th>Prepayment</th><th>Grace</th><th>Contract</th><th></th></tr></thead><tbody></tbody></table>
      <div id="new-subscription" class="secret" hidden>
        <p>New subscription <b id="new-subscription-id"></b>; its payer token, shown only this once (hand it to the customer):</p>
        <code id="new-subscription-token"></code>
      </div>
      <h2>Subscriptions</h2>
      <table id="subscriptions"><thead><tr><th>Id</th><th>Plan</th><th>Status</th><th>Balance</th><th>Paid through</th><th>Created</th><th></th></tr></thead><tbody></tbody></table>
    </section>

    <section class="card" id="streams-section">
      <h2>Streams</h2>
      <table id="streams"><thead><tr><th>Id</th><th>Status</th><th>Meter</th><th>Balance</th><th>Rate</th><th>Metadata</th><th>Created</th></tr></thead><tbody></tbody></table>
    </section>

    <section class="card" id="invoices-section">
      <h2>Invoices</h2>
      <form id="invoice-form" class="row">
        <label>Amount (msat) <input id="invoice-amount" inputmode="numeric" pattern="[0-9]+" required></label>
        <label>Description <input id="invoice-description" maxlength="200"></label>
        <button type="submit">Create invoice</button>
      </form>
      <div id="invoice-created" class="invoice" hidden>
        <img id="invoice-qr" alt="QR code of the invoice" width="180" height="180">
        <textarea id="invoice-request" readonly rows="4" aria-label="the invoice"></textarea>
      </div>
      <table id="invoices"><thead><tr><th>Payment hash</th><th>Amount</th><th>Status</th><th>Description</th><th>Created</th><th></th></tr></thead><tbody></tbody></table>
    </section>

    <section class="card" id="payments-section">
      <h2>Payments</h2>
      <table id="payments"><thead><tr><th>Payment hash</th><th>Kind</th><th>Amount</th><th>Fee</th><th>Status</th><th>Created</th></tr></thead><tbody></tbody></table>
    </section>

    <section class="card" id="webhooks-section">
      <h2>Webhooks</h2>
      <form id="webhook-form" class="row">
        <label>URL <input id="webhook-url" type="url" maxlength="2048" placeholder="https://shop.example/sluice-hook" required></label>
        <label>Event types <input id="webhook-events" value="*" required></label>
        <button type="submit">Add endpoint</button>
      </form>
      <div id="webhook-secret-box" class="secret" hidden>
        <p>Signing secret of <b id="webhook-secret-endpoint"></b>, shown only this once:</p>
        <code id="webhook-secret"></code>
      </div>
      <table id="webhooks"><thead><tr><th>URL</th><th>Id</th><th>Events</th><th>Status</th><th>Failures</th><th></th></tr></thead><tbody></tbody></table>
      <div id="deliveries-panel" hidden>
        <h3>Delivery log of <span id="deliveries-endpoint"></span></h3>
        <table id="deliveries"><thead><tr><th>Event</th><th>Event id</th><th>Status</th><th>Attempts</th><th>Last answer</th><th>Created</th><th></th></tr></thead><tbody></tbody></table>
      </div>
    </section>

    <section class="card" id="devnet" hidden>
      <h2>Devnet wallets <small class="fake">fake money</small></h2>
      <table id="wallets"><thead><tr><th>Wallet</th><th>Balance</th><th>Pubkey</th></tr></thead><tbody></tbody></table>
      <form id="devnet-pay-form" class="grid">
        <label>Wallet <select id="devnet-wallet"></select></label>
        <label>Invoice <textarea id="devnet-invoice" rows="3" required></textarea></label>
        <button type="submit">Pay from the devnet wallet</button>
      </form>
      <p id="devnet-pay-result" class="hint"></p>
    </section>
  </div>
</main>
</body>
</html>
`;

export const CUSTOMER_HTML = `${head('Your streams and subscriptions', 'customer.js')}
<body>
<header>
  <h1>Your streams and subscriptions <small>Sluice</small></h1>
  <p class="fake" id="devnet-badge" hidden>devnet — fake money</p>
  <button id="sign-out" type="button" hidden>Forget my tokens</button>
</header>
<p id="status" class="status" role="status" aria-live="polite"></p>
<main>
  <section id="signin" class="card">
    <h2>Open with your payer token</h2>
    <p class="hint">The merchant gave you a payer token (pt_... for a stream, spt_... for a subscription) for each one. Open as many as you have; they stay in this tab only.</p>
    <form id="token-form" class="row">
      <label>Payer token <input id="payer-token" type="password" autocomplete="off" placeholder="pt_... or spt_..." required></label>
      <button type="submit">Open</button>
    </form>
  </section>
  <section id="refund-to" class="card" hidden>
    <h2>Refunds go to</h2>
    <form id="refund-form" class="row">
      <label>Devnet wallet <select id="refund-wallet"></select></label>
      <label>or Lightning address <input id="refund-address" placeholder="you@wallet.example" maxlength="320"></label>
    </form>
    <p class="hint">Used when you close a stream or cancel a subscription; without one, you are asked for an invoice.</p>
  </section>
  <div id="items"></div>
</main>
</body>
</html>
`;

export const ICON_SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><path d="M2 11c3-4 5 2 8-2s3-2 4-3v8H2z" fill="#0b57d0"/></svg>';

export const STYLE_CSS = `:root{--fg:#1b1f24;--muted:#5b6470;--line:#d8dde3;--accent:#0b57d0;--ok:#137333;--bad:#b3261e;--warn:#c99a00}
*{box-sizing:border-box}
[hidden]{display:none !important}
body{font-family:system-ui,sans-serif;color:var(--fg);margin:0;background:#f6f8fa;line-height:1.4}
header{display:flex;flex-wrap:wrap;align-items:center;gap:1rem;padding:.8rem 1.5rem;background:#fff;border-bottom:1px solid var(--line)}
header h1{font-size:1.3rem;margin:0}
header small{color:var(--muted);font-weight:400}
main{max-width:78rem;margin:0 auto;padding:1rem 1.5rem}
.card{background:#fff;border:1px solid var(--line);border-radius:.5rem;padding:1rem 1.2rem;margin:0 0 1rem}
.card h2{font-size:1.1rem;margin:.2rem 0 .8rem}
.card h3{font-size:1rem}
.fake{background:#ffe08a;border:2px solid var(--warn);padding:.1rem .6rem;border-radius:.4rem;font-weight:600;font-size:.85rem;margin:0}
.who{color:var(--muted);margin:0}
.nav{display:flex;flex-wrap:wrap;gap:.3rem 1rem;width:100%;font-size:.9rem}
.nav a{color:var(--accent);text-decoration:none}
.nav a:hover{text-decoration:underline}
.status{margin:.5rem 1.5rem;min-height:1.2em;color:var(--bad)}
.status.ok{color:var(--ok)}
.hint{color:var(--muted);font-size:.9rem}
.row{display:flex;flex-wrap:wrap;gap:.6rem;align-items:end;margin:.4rem 0}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(14rem,1fr));gap:.6rem;align-items:end;margin:.4rem 0}
label{display:flex;flex-direction:column;font-size:.85rem;color:var(--muted);gap:.2rem}
input,select,textarea{font:inherit;padding:.35rem .5rem;border:1px solid var(--line);border-radius:.3rem;color:var(--fg);min-width:12rem}
textarea{width:100%;font-family:ui-monospace,monospace;font-size:.8rem}
button{font:inherit;padding:.35rem .8rem;border:1px solid var(--accent);background:var(--accent);color:#fff;border-radius:.3rem;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}
button.danger{background:#fff;color:var(--bad);border-color:var(--bad)}
button:disabled{opacity:.5;cursor:default}
table{border-collapse:collapse;width:100%;margin:.6rem 0;font-size:.9rem}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--muted);font-weight:600}
td.mono,code{font-family:ui-monospace,monospace;font-size:.8rem;word-break:break-all}
td.num{text-align:right;white-space:nowrap}
.secret{background:#fff8e1;border:1px solid var(--warn);border-radius:.4rem;padding:.6rem;margin:.6rem 0}
.secret code{display:block;margin:.4rem 0}
.invoice{display:flex;gap:1rem;align-items:start;margin:.6rem 0}
.invoice img{flex:none;background:#fff}
.state-active,.state-open,.state-paid,.state-succeeded,.state-delivered,.state-enabled{color:var(--ok);font-weight:600}
.state-past_due,.state-pending,.state-paused{color:var(--warn);font-weight:600}
.state-suspended,.state-failed,.state-disabled,.state-expired{color:var(--bad);font-weight:600}
.state-closed,.state-cancelled,.state-revoked{color:var(--muted);font-weight:600}
.balances{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem;margin:0}
.balances dt{color:var(--muted)}
.balances dd{margin:0;font-weight:600}
.item{position:relative}
.item .controls{display:flex;flex-wrap:wrap;gap:.5rem;margin:.6rem 0}
.refund{background:#e6f4ea;border:1px solid var(--ok);border-radius:.4rem;padding:.5rem}
.events{font-size:.85rem;color:var(--muted);max-height:10rem;overflow:auto}
`;
