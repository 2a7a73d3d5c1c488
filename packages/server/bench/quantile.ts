/**
 * The benchmarks' one quantile: nearest rank (the smallest value with at least q of the values
 * at or below it), so p99 of 200,000 latencies is the 198,000th smallest and p100 the largest.
 * The benchmark files each had their own before, two of them one rank higher.
 */

/** The q-quantile (0 < q <= 1) of values sorted ascending; NaN when there are none. */
export function quantileOfSorted(sorted: ArrayLike<number>, q: number): number {
  if (!(q > 0 && q <= 1)) throw new RangeError(`a quantile takes 0 < q <= 1, got ${q}`);
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)] as number;
}

/** The q-quantile of values in any order (sorts a copy). */
export function quantile(values: readonly number[], q: number): number {
  return quantileOfSorted([...values].sort((a, b) => a - b), q);
}
