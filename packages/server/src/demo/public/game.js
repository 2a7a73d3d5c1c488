// The demo game's page: plain ES modules, no bundler. The player's side uses the SDK
// (SluicePayer with the devnet wallet); the game's side (charging shots, rewarding hits)
// runs on the server, which is how a real game keeps the player from cheating.
import { SluicePayer, devnetWallet, SluiceClient, storageSpendLog } from '/sdk/index.js';

const $ = (id) => document.getElementById(id);
const WALLET = 'alice';

/** msat (bigint) as sats with up to three decimals: 1500n -> "1.5 sats". */
function sats(msat) {
  const negative = msat < 0n;
  const abs = negative ? -msat : msat;
  const fraction = (abs % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
  return `${negative ? '−' : ''}${abs / 1000n}${fraction ? '.' + fraction : ''} sats`;
}

function show(id, msat) {
  const element = $(id);
  element.textContent = sats(msat);
  element.dataset.msat = msat.toString();
}

const state = { game: null, payer: null, clockOffsetMs: 0, shooting: false, refs: 0, flash: null };

function targetX(atMs = Date.now() + state.clockOffsetMs) {
  const target = state.game?.target;
  if (!target) return 0.5;
  return 0.5 + 0.4 * Math.sin((2 * Math.PI * (atMs - target.started_at_ms)) / target.period_ms + target.phase);
}

// For the browser test: where the target is now.
window.demo = { targetX: () => targetX(), state };

function log(text) {
  const item = document.createElement('li');
  item.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  $('events').prepend(item);
  while ($('events').children.length > 60) $('events').lastElementChild.remove();
}

function status(text) {
  $('status').textContent = text;
}

// ---- drawing ----

function draw() {
  const canvas = $('field');
  const context = canvas.getContext('2d');
  const { width, height } = canvas;
  context.clearRect(0, 0, width, height);
  context.fillStyle = '#7cb342';
  context.fillRect(0, height - 40, width, 40);
  if (state.game) {
    const x = targetX() * width;
    const radius = state.game.target.half_width * width;
    const y = height / 2;
    for (const [scale, color] of [[1, '#b3261e'], [0.66, '#ffffff'], [0.33, '#b3261e']]) {
      context.beginPath();
      context.arc(x, y, radius * scale, 0, 2 * Math.PI);
      context.fillStyle = color;
      context.fill();
    }
  } else {
    context.fillStyle = '#5b6470';
    context.font = '20px system-ui, sans-serif';
    context.textAlign = 'center';
    context.fillText('Press "New game" to start', width / 2, height / 2);
  }
  if (state.flash && performance.now() - state.flash.at < 400) {
    context.beginPath();
    context.arc(state.flash.x, state.flash.y, 10, 0, 2 * Math.PI);
    context.strokeStyle = state.flash.hit ? '#137333' : '#1b1f24';
    context.lineWidth = 3;
    context.stroke();
  }
  requestAnimationFrame(draw);
}

// ---- wallet panel ----

async function refreshWallet() {
  if (!state.game) return;
  const client = new SluiceClient({ baseUrl: location.origin, apiKey: state.game.payer_token });
  const [{ wallets }, house] = await Promise.all([
    client.devnetWallets(),
    fetch('/demo/api/house').then((response) => response.json()),
  ]);
  const mine = wallets.find((wallet) => wallet.name === WALLET);
  if (mine) show('wallet-balance', mine.balance_msat);
  show('house', BigInt(house.house_msat));
}

function renderFunding() {
  const payer = state.payer;
  const invoice = payer && !payer.closed ? payer.pendingInvoice : null;
  $('funding').hidden = invoice === null;
  if (invoice === null) return;
  if ($('invoice').value !== invoice.payment_request) {
    $('invoice').value = invoice.payment_request;
    $('qr').src = `/demo/api/qr?data=${encodeURIComponent('lightning:' + invoice.payment_request)}`;
  }
  $('funding-amount').textContent = `Amount: ${sats(invoice.amount_msat)}`;
}

function renderAllowance() {
  const payer = state.payer;
  if (!payer) return;
  const { perStreamMsat, perHourMsat } = payer.allowance;
  $('allowance-state').textContent = perStreamMsat === 0n && perHourMsat === 0n
    ? 'Automatic top-ups are off until you apply an allowance.'
    : `Automatic top-ups: up to ${sats(perStreamMsat)} into this game, ${sats(perHourMsat)} per hour (${sats(payer.spentThisHourMsat)} used this hour)${payer.paused ? ' — paused' : ''}.`;
  $('pause').textContent = payer.paused ? 'Resume' : 'Pause';
}

function satsInput(id) {
  const value = $(id).value.trim();
  if (!/^[0-9]{1,9}$/.test(value)) throw new Error('allowances are whole sats');
  return BigInt(value) * 1000n;
}

// ---- game ----

async function newGame() {
  $('new-game').disabled = true;
  state.payer?.disconnect();
  state.payer = null;
  try {
    const response = await fetch('/demo/api/games', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const game = await response.json();
    if (!response.ok) throw new Error(game.error?.message ?? `HTTP ${response.status}`);
    state.game = game;
    state.clockOffsetMs = game.server_time_ms - Date.now();
    $('shot-price').textContent = sats(BigInt(game.shot_msat));
    $('hit-reward').textContent = sats(BigInt(game.hit_reward_msat));
    $('wallet').hidden = false;
    $('refund').hidden = true;
    $('close').disabled = false;
    $('events').replaceChildren();
    const payer = await SluicePayer.connect({
      baseUrl: location.origin,
      payerToken: game.payer_token,
      wallet: devnetWallet({ baseUrl: location.origin, key: game.payer_token, wallet: WALLET }),
      // Off until the player applies an allowance: the first funding is always a person's choice.
      allowance: { perStreamMsat: 0n, perHourMsat: 0n },
      // One hourly allowance for every game in this browser, across reloads and tabs (the
      // check and the record of each automatic payment are taken under a Web Lock).
      spendLog: storageSpendLog(localStorage),
    });
    state.payer = payer;
    payer.on('balance', (balance) => show('balance', balance));
    payer.on('event', (event) => {
      if (event.type !== 'balance') log(describe(event));
      renderFunding();
      if (event.type === 'funded' || event.type === 'settled') refreshWallet().catch(() => {});
      if (event.type === 'settled') {
        $('refund').hidden = false;
        $('refund').textContent = `Refund of ${sats(event.amount_msat)} landed in your devnet wallet (${WALLET}).`;
        $('refund').dataset.msat = event.amount_msat.toString();
      }
    });
    payer.on('allowance_exceeded', ({ reason }) => {
      $('funding-reason').textContent = {
        per_stream: 'Not paid automatically: it would pass your allowance for this game.',
        per_hour: 'Not paid automatically: it would pass your allowance for this hour.',
        paused: 'Not paid automatically: top-ups are paused.',
        no_wallet: 'No wallet connected.',
      }[reason];
      renderFunding();
    });
    payer.on('invoice_paid', ({ invoice, automatic }) => {
      log(`${automatic ? 'automatic top-up' : 'you paid'} ${sats(invoice.amount_msat)}`);
      renderAllowance();
    });
    payer.on('payment_failed', ({ error }) => status(`payment failed: ${error.message}`));
    payer.on('connection', (connection) => status(connection === 'open' ? '' : `connection: ${connection}`));
    payer.on('error', (error) => status(error.message));
    show('balance', payer.balanceMsat);
    $('funding-reason').textContent = '';
    renderFunding();
    renderAllowance();
    await refreshWallet();
    log(`new game ${game.stream_id}`);
  } catch (error) {
    status(`could not start a game: ${error.message}`);
  } finally {
    $('new-game').disabled = false;
  }
}

function describe(event) {
  switch (event.type) {
    case 'charged': return `shot: −${sats(event.amount_msat)}`;
    case 'rewarded': return `hit: +${sats(event.amount_msat)}`;
    case 'invoice': return `top-up invoice for ${sats(event.amount_msat)}`;
    case 'funded': return `funded: +${sats(event.amount_msat)}`;
    case 'payout_invoice_needed': return `refund of ${sats(event.amount_msat)} asked for`;
    case 'settled': return `refund paid: ${sats(event.amount_msat)}`;
    case 'closed': return `closed by ${event.by}`;
    default: return event.type;
  }
}

async function shoot(clickEvent) {
  if (!state.game || !state.payer || state.payer.closed || state.shooting) return;
  const canvas = $('field');
  const rect = canvas.getBoundingClientRect();
  const aim = Math.min(1, Math.max(0, (clickEvent.clientX - rect.left) / rect.width));
  state.flash = { x: aim * canvas.width, y: canvas.height / 2, at: performance.now(), hit: false };
  state.shooting = true;
  try {
    state.refs += 1;
    const response = await fetch(`/demo/api/games/${state.game.stream_id}/shots`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${state.game.payer_token}` },
      body: JSON.stringify({ aim, ref: `${Date.now().toString(36)}-${state.refs}` }),
    });
    const result = await response.json();
    const line = $('last-shot');
    if (!response.ok) {
      line.className = 'last-shot miss';
      line.textContent = result.error?.code === 'stream_limit_exceeded' ? 'Out of sats: fund the game to keep shooting.' : result.error?.message ?? 'the shot failed';
      renderFunding();
      return;
    }
    state.flash.hit = result.hit;
    line.className = `last-shot ${result.hit ? 'hit' : 'miss'}`;
    line.textContent = result.hit
      ? `Hit! −${sats(BigInt(result.charged_msat))} +${sats(BigInt(result.rewarded_msat))} (${result.hits}/${result.shots})`
      : `Miss: −${sats(BigInt(result.charged_msat))} (${result.hits}/${result.shots})`;
    show('house', BigInt(result.house_msat));
  } finally {
    state.shooting = false;
  }
}

async function togglePause() {
  const payer = state.payer;
  if (!payer) return;
  if (payer.paused) await payer.resume();
  else await payer.pause();
  renderAllowance();
}

async function closeGame() {
  const payer = state.payer;
  if (!payer) return;
  $('close').disabled = true;
  try {
    const stream = await payer.close();
    log(`closed with ${sats(stream.balance_msat)} left: refund on its way`);
    renderFunding();
  } catch (error) {
    $('close').disabled = false;
    status(`could not close: ${error.message}`);
  }
}

$('new-game').addEventListener('click', () => void newGame());
$('field').addEventListener('click', (event) => void shoot(event));
$('pay-devnet').addEventListener('click', async () => {
  $('pay-devnet').disabled = true;
  try {
    await state.payer?.payInvoice();
  } catch (error) {
    status(`payment failed: ${error.message}`);
  } finally {
    $('pay-devnet').disabled = false;
  }
});
$('allowance-form').addEventListener('submit', (event) => {
  event.preventDefault();
  try {
    state.payer?.setAllowance({ perStreamMsat: satsInput('per-stream'), perHourMsat: satsInput('per-hour') });
    renderAllowance();
  } catch (error) {
    status(error.message);
  }
});
$('pause').addEventListener('click', () => void togglePause());
$('close').addEventListener('click', () => void closeGame());
setInterval(() => {
  if (state.payer) renderAllowance();
}, 5000);
requestAnimationFrame(draw);
