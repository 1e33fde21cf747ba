// Reading the operator's /metrics text in the benchmarks: sums of labelled samples,
// unlabelled values, and the API requests it counted, per VM by verb and resource.

/** Sums the samples of `name` whose labels match every given pair. */
export function metricSum(text: string, name: string, labels: Record<string, string | RegExp> = {}): number {
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} ([0-9.e+-]+)$`, 'gm'))) {
    const pairs = new Map([...(m[1] ?? '').matchAll(/([a-zA-Z_]+)="([^"]*)"/g)].map((p) => [p[1] ?? '', p[2] ?? '']));
    const ok = Object.entries(labels).every(([k, want]) => (typeof want === 'string' ? pairs.get(k) === want : want.test(pairs.get(k) ?? '')));
    if (ok) total += Number(m[2]);
  }
  return total;
}

/** The value of an unlabelled sample (`name value`); undefined when the operator does not export it. */
export function metricValue(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} ([0-9.e+-]+)$`, 'm').exec(text);
  return m === null ? undefined : Number(m[1]);
}

/** Requests per VM by verb and resource (`POST:pods=1.00,…`), from the counters' difference; empty for an operator that does not label them. */
export function requestsByResource(before: string, after: string, vms: number): string {
  const sums = (text: string): Map<string, number> => {
    const out = new Map<string, number>();
    for (const m of text.matchAll(/^keyvirt_api_requests_total\{([^}]*)\} ([0-9.e+-]+)$/gm)) {
      const labels = new Map([...(m[1] ?? '').matchAll(/([a-z_]+)="([^"]*)"/g)].map((p) => [p[1] ?? '', p[2] ?? '']));
      if (labels.get('class') === 'watch' || !labels.has('resource')) continue;
      const key = `${labels.get('verb') ?? ''}:${labels.get('resource') ?? ''}${labels.get('class') === 'status' ? '/status' : ''}`;
      out.set(key, (out.get(key) ?? 0) + Number(m[2]));
    }
    return out;
  };
  const b = sums(before);
  return [...sums(after)]
    .map(([k, v]): [string, number] => [k, (v - (b.get(k) ?? 0)) / vms])
    .filter(([, v]) => v >= 0.005)
    .sort((x, y) => y[1] - x[1])
    .map(([k, v]) => `${k}=${v.toFixed(2)}`)
    .join(',');
}

/** Requests the operator counted (reads and writes, not watches); undefined for an operator that does not count them. */
export function operatorRequests(metricsText: string): number | undefined {
  if (!metricsText.includes('keyvirt_api_requests_total')) return undefined;
  return metricSum(metricsText, 'keyvirt_api_requests_total', { class: /^(read|write|status)$/ });
}

/** Seconds requests waited for the operator's rate limit between two scrapes, summed ('n/a': not exported). */
export function rateLimitWaitBetween(before: string, after: string): string {
  const name = 'keyvirt_api_rate_limit_wait_seconds_total';
  const from = metricValue(before, name);
  const to = metricValue(after, name);
  return from === undefined || to === undefined ? 'n/a' : (to - from).toFixed(1);
}
