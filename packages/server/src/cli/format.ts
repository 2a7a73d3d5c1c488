/** Output for people: aligned "label  value" lines, amounts in msat with sats beside them. */
import { describeMsat, type Msat } from '../money/msat.js';

export type Row = readonly [label: string, value: string | null | undefined];

/** Rows whose value is null or undefined are left out. */
export function formatRows(rows: readonly Row[], indent = '  '): string {
  const shown = rows.filter((row): row is readonly [string, string] => row[1] !== null && row[1] !== undefined);
  const width = Math.max(0, ...shown.map(([label]) => label.length));
  return shown.map(([label, value]) => `${indent}${label.padEnd(width)}  ${value}\n`).join('');
}

export function amount(value: bigint): string {
  return describeMsat(value as Msat);
}

export function time(value: Date | null): string | null {
  return value === null ? null : value.toISOString();
}

/** A table with a header row; columns padded to their widest cell. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => (row[column] ?? '').length)));
  const line = (cells: readonly string[]) => cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join('  ').trimEnd() + '\n';
  return line(header) + rows.map(line).join('');
}
