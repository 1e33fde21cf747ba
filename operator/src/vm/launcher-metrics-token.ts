// The launcher's read-only metrics token (ADR 0069): the operator writes it into the
// launcher's Secret as `metrics-token`, beside the API token, when the cluster has a
// metrics key; the launcher lets it open GET /v1/metrics alone; the node agent derives
// the same token from the key and the VM uid label of the launcher pod.
import { readSecretFile } from '../runtime/secret-file.ts';
import { deriveMetricsToken, METRICS_TOKEN_FILE_NAME } from '@keyvirt/launcher/api';

export class MetricsKeyError extends Error {
  override readonly name = 'MetricsKeyError';
}

/** The metrics key in `path` (surrounding whitespace trimmed); at least 32 bytes. */
export function readMetricsKey(path: string): Buffer {
  const key = Buffer.from(readSecretFile(path, 'metrics key', (message, options) => new MetricsKeyError(message, options)), 'utf8');
  if (key.length < 32) throw new MetricsKeyError(`the metrics key in ${path} is shorter than 32 bytes`);
  return key;
}

/** The Secret data entry holding the VM's metrics token, or none without a key. */
export function metricsTokenData(key: Buffer | undefined, vmUid: string | undefined): Record<string, string> {
  if (key === undefined || vmUid === undefined || vmUid === '') return {};
  return { [METRICS_TOKEN_FILE_NAME]: Buffer.from(deriveMetricsToken(key, vmUid)).toString('base64') };
}
