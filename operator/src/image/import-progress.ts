// Reads an import job's progress from its pod: one small JSON document the importer
// serves read-only on its progress port. Only pods the controller has checked are its
// own are asked (domain-jobs.ts); the answer is bounded and parsed like any other
// input, and any failure only means "no progress this time".
import { isIP } from 'node:net';
import type { Pod } from '../runtime/core-schemas.ts';
import { ImportProgressDocument } from './import-job.ts';
import { IMPORT_PROGRESS_PATH, IMPORT_PROGRESS_PORT } from './import-script.ts';

const MAX_DOCUMENT_BYTES = 1024;
const TIMEOUT_MS = 2000;

/** The progress URL of a pod at `podIp`, or undefined for an address that is not an IP. */
export function progressUrl(podIp: string | undefined, port = IMPORT_PROGRESS_PORT): string | undefined {
  if (podIp === undefined) return undefined;
  const family = isIP(podIp);
  if (family === 0) return undefined;
  return `http://${family === 6 ? `[${podIp}]` : podIp}:${port}${IMPORT_PROGRESS_PATH}`;
}

/** The progress document of `pod`, or undefined when it does not answer with one. */
export async function readImportProgress(pod: Pod, signal: AbortSignal, port = IMPORT_PROGRESS_PORT): Promise<ImportProgressDocument | undefined> {
  const url = progressUrl(pod.status?.podIP, port);
  if (url === undefined) return undefined;
  try {
    const response = await fetch(url, { signal: AbortSignal.any([signal, AbortSignal.timeout(TIMEOUT_MS)]), redirect: 'error' });
    if (!response.ok) return undefined;
    const text = await response.text();
    if (text.length > MAX_DOCUMENT_BYTES) return undefined;
    const parsed = ImportProgressDocument.safeParse(JSON.parse(text));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
