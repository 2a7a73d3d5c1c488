/**
 * Upstream reachability for the gateway's health check: one request to the upstream's
 * health path with a short timeout. Any HTTP answer, even a 404 or a 500, means the
 * upstream is reachable (its own health is its business); no answer means it is not.
 */
export interface UpstreamProbe {
  reachable: boolean;
  /** The upstream's HTTP status, when it answered. */
  status: number | null;
  latency_ms: number;
  /** Why it is unreachable: upstream_timeout or upstream_unavailable. */
  code: 'upstream_timeout' | 'upstream_unavailable' | null;
  error: string | null;
}

export async function probeUpstream(url: URL, timeoutMs: number): Promise<UpstreamProbe> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  try {
    const response = await fetch(url, { method: 'GET', redirect: 'manual', signal: AbortSignal.timeout(timeoutMs), headers: { 'user-agent': 'sluice-gateway-health' } });
    await response.body?.cancel();
    return { reachable: true, status: response.status, latency_ms: elapsed(), code: null, error: null };
  } catch (error) {
    const name = (error as Error).name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return { reachable: false, status: null, latency_ms: elapsed(), code: 'upstream_timeout', error: `no answer within ${timeoutMs} ms` };
    }
    const cause = (error as { cause?: { code?: string; message?: string } }).cause;
    return { reachable: false, status: null, latency_ms: elapsed(), code: 'upstream_unavailable', error: cause?.code ?? cause?.message ?? (error as Error).message };
  }
}
