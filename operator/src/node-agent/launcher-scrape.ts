// Reads one launcher's GET /v1/metrics with the VM's metrics token (ADR 0069). The
// answer is the launcher's word (its guest may have escaped QEMU): read with a
// deadline, at most MAX_BODY_BYTES, parsed with the API's bounded schema.
import { deriveMetricsToken, VmMetricsSchema, type VmMetrics } from '@keyvirt/launcher/api';
import type { LauncherTarget } from './launcher-pods.ts';

/** A real answer is a few KiB; 1 MiB bounds what a launcher can make the agent buffer. */
export const MAX_BODY_BYTES = 1024 * 1024;

export type ScrapeFailure = 'unreachable' | 'timeout' | 'unauthorized' | 'http' | 'too-large' | 'invalid';

export class LauncherScrapeError extends Error {
  override readonly name = 'LauncherScrapeError';
  readonly reason: ScrapeFailure;
  constructor(reason: ScrapeFailure, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

async function readCapped(body: ReadableStream<Uint8Array>, max: number): Promise<string> {
  const reader = body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > max) {
      await reader.cancel();
      throw new LauncherScrapeError('too-large', `answer larger than ${max} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** The launcher's metrics, or a LauncherScrapeError naming why not. */
export async function scrapeLauncher(target: LauncherTarget, key: Buffer, timeoutMs: number): Promise<VmMetrics> {
  const signal = AbortSignal.timeout(timeoutMs);
  let res: Response;
  try {
    res = await fetch(target.url, { headers: { authorization: `Bearer ${deriveMetricsToken(key, target.vmUid)}` }, signal, redirect: 'error' });
  } catch (err) {
    throw new LauncherScrapeError(signal.aborted ? 'timeout' : 'unreachable', `cannot reach ${target.url}`, { cause: err });
  }
  if (res.status === 401) {
    await res.body?.cancel();
    throw new LauncherScrapeError('unauthorized', `${target.url} refused the metrics token`);
  }
  if (res.status !== 200 || res.body === null) {
    await res.body?.cancel();
    throw new LauncherScrapeError('http', `${target.url} answered ${res.status}`);
  }
  let text: string;
  try {
    text = await readCapped(res.body, MAX_BODY_BYTES);
  } catch (err) {
    if (err instanceof LauncherScrapeError) throw err;
    throw new LauncherScrapeError(signal.aborted ? 'timeout' : 'unreachable', `reading ${target.url} failed`, { cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new LauncherScrapeError('invalid', `${target.url} did not answer JSON`, { cause: err });
  }
  const parsed = VmMetricsSchema.safeParse(json);
  if (!parsed.success) throw new LauncherScrapeError('invalid', `${target.url} answered an unexpected shape: ${parsed.error.issues.slice(0, 3).map((i) => i.path.join('.')).join(', ')}`);
  return parsed.data;
}
