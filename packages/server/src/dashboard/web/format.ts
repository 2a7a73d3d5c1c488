/** Amounts are decimal strings of msat on the wire; shown as sats, exactly (up to three decimals). */
export function sats(msat: string | bigint): string {
  const value = typeof msat === 'bigint' ? msat : BigInt(msat);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const fraction = (abs % 1000n).toString().padStart(3, '0').replace(/0+$/, '');
  const whole = (abs / 1000n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${negative ? '−' : ''}${whole}${fraction ? '.' + fraction : ''} sat`;
}

export function when(iso: string | null): string {
  if (iso === null) return '—';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

/** Seconds as "3d 4h", "5m 12s": the largest unit and the next one when it is not zero. */
export function duration(totalSeconds: number): string {
  if (!Number.isFinite(totalSeconds)) return '∞';
  const seconds = Math.max(0, Math.floor(totalSeconds));
  const units = [['d', 86_400], ['h', 3600], ['m', 60], ['s', 1]] as const;
  const index = units.findIndex(([, size]) => seconds >= size);
  if (index === -1) return '0s';
  const [unit, size] = units[index] as (typeof units)[number];
  const next = units[index + 1];
  const rest = next ? Math.floor((seconds % size) / next[1]) : 0;
  return `${Math.floor(seconds / size)}${unit}${next && rest > 0 ? ` ${rest}${next[0]}` : ''}`;
}

export function short(id: string, keep = 14): string {
  return id.length <= keep ? id : `${id.slice(0, keep)}…`;
}

/** Whole sats typed by a person, as msat. */
export function satsInput(text: string): string {
  if (!/^[0-9]{1,10}$/.test(text)) throw new Error('amounts are whole sats');
  return (BigInt(text) * 1000n).toString();
}
