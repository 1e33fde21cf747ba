// `kubectl keyvirt image-upload IMAGE --file PATH`: waits until the image's import job
// receives, sends the file through the API server to virtualmachineimages/upload in
// parts sized to end well within the API server's request timeout (ADR 0097, 0109),
// from where the import job stands (so running it again after an interruption resumes),
// shows the bytes sent, then waits for the image to be Ready or prints why it failed.
// Each part is read as a stream: memory stays bounded and the API server's pace sets
// the reading pace.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { KubeConfig } from '@kubernetes/client-node';
import { GROUP, VERSION } from '@keyvirt/crds';
import { z } from 'zod';
import { UPLOAD_WAITING } from '../image/image-status.ts';
import { KubeApiError, KubeTransportError, type KubeClient } from '../runtime/kube-client.ts';
import { explainApiError, SUBRESOURCE_GROUP, SUBRESOURCE_VERSION, type Attempt } from './api-errors.ts';
import { PluginError, StateError, UsageError } from './errors.ts';
import type { VmRef } from './keyvirt-api.ts';


export const ImageView = z.object({
  metadata: z.object({ name: z.string(), namespace: z.string() }),
  spec: z.looseObject({ source: z.looseObject({ upload: z.looseObject({}).optional() }) }),
  status: z
    .looseObject({
      phase: z.string().optional(),
      reason: z.string().optional(),
      message: z.string().optional(),
      size: z.string().optional(),
      format: z.string().optional(),
      sourceFormat: z.string().optional(),
      progress: z.looseObject({ display: z.string().optional(), bytes: z.number().optional() }).optional(),
    })
    .optional(),
});
export type ImageView = z.infer<typeof ImageView>;

export interface ImageUploadOptions {
  readonly file: string;
  readonly timeoutSeconds: number;
  /** Bytes per second at most (--limit-rate). */
  readonly limitRate?: number | undefined;
  /** Between two looks at the image's status. */
  readonly pollMs?: number;
}

export interface ImageUploadIo {
  readonly out: (line: string) => void;
  readonly progress: (line: string) => void;
}

const statusBody = z.object({ message: z.string().optional(), reason: z.string().optional() });

function imagePath(ref: VmRef): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${encodeURIComponent(ref.namespace)}/virtualmachineimages/${encodeURIComponent(ref.name)}`;
}

function uploadPath(ref: VmRef): string {
  return `/apis/${SUBRESOURCE_GROUP}/${SUBRESOURCE_VERSION}/namespaces/${encodeURIComponent(ref.namespace)}/virtualmachineimages/${encodeURIComponent(ref.name)}/upload`;
}

/** What the plugin does next for an image in this state: wait, send, or stop with why. Pure. */
export function uploadReadiness(image: ImageView): 'send' | 'wait' | { readonly why: string } {
  const what = `VirtualMachineImage "${image.metadata.name}" in namespace "${image.metadata.namespace}"`;
  if (image.spec.source.upload === undefined) return { why: `${what} does not take an upload: its spec.source is not upload` };
  const phase = image.status?.phase;
  if (phase === 'Ready') return { why: `${what} is already Ready: an upload goes to a new image` };
  if (phase === 'Failed') return { why: `${what} failed: ${image.status?.reason ?? 'Failed'}: ${image.status?.message ?? ''}` };
  const progress = image.status?.progress;
  if (progress?.display === UPLOAD_WAITING) return 'send';
  // Part of an upload received, the rest to come (an interrupted upload): "37%" or "37% 2Mi/s", no later stage named.
  const receiving = (progress?.bytes ?? 0) > 0 && /^\d+%( \S+\/s)?$/.test(progress?.display ?? '');
  return receiving ? 'send' : 'wait';
}

/** "12.0 MiB / 48.0 MiB (25%)" */
export function sentLine(sent: number, total: number): string {
  const mib = (n: number): string => `${(n / (1024 * 1024)).toFixed(1)} MiB`;
  const percent = total > 0 ? Math.floor((sent * 100) / total) : 100;
  return `uploaded ${mib(sent)} / ${mib(total)} (${String(percent)}%)`;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function readImage(kube: KubeClient, ref: VmRef, attempt: Attempt): Promise<ImageView> {
  try {
    return ImageView.parse(await kube.get(imagePath(ref)));
  } catch (err) {
    throw explainApiError(err, attempt);
  }
}

interface Sending {
  readonly kc: KubeConfig;
  readonly ref: VmRef;
  readonly file: string;
  readonly size: number;
  readonly attempt: Attempt;
  /** Bytes per second at most; unlimited when undefined. */
  readonly limitRate?: number | undefined;
}

interface PartAnswer {
  readonly code: number;
  readonly reason: string;
  readonly message: string;
}

/** A part aims at this long: well within the API server's request timeout (60 s by default) at any rate (ADR 0109). */
const PART_TARGET_MS = 10_000;
export const MIN_PART_BYTES = 256 * 1024;
export const MAX_PART_BYTES = 64 * 1024 * 1024;
const FIRST_PART_BYTES = 4 * 1024 * 1024;
/** A part that moves no byte for this long is given up and sent again. */
const PART_STALL_MS = 120_000;
/** Failed parts in a row (transport errors, 5xx) before the upload is given up. */
const MAX_FAILURES = 5;

/** The size of the next part for the rate the last one went at, in 64 KiB steps. Pure. */
export function nextPartBytes(lastBytes: number, lastMs: number): number {
  if (lastBytes <= 0 || lastMs <= 0) return FIRST_PART_BYTES;
  const wanted = (lastBytes / lastMs) * PART_TARGET_MS;
  const step = 64 * 1024;
  return Math.min(MAX_PART_BYTES, Math.max(MIN_PART_BYTES, Math.floor(wanted / step) * step));
}

/** Where the upload stands according to an answer of the subresource ("the upload is at byte N of T"), if it says. Pure. */
export function standing(message: string): { readonly at: number; readonly size: number } | undefined {
  const m = /the upload is at byte (\d{1,15}) of (\d{1,15})/.exec(message);
  return m === null ? undefined : { at: Number(m[1]), size: Number(m[2]) };
}

/** Holds the stream to `bytesPerSecond` from its first byte on. */
function rateLimit(bytesPerSecond: number): Transform {
  let passed = 0;
  let since = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, done): void {
      if (since === 0) since = Date.now();
      passed += chunk.length;
      const due = since + (passed / bytesPerSecond) * 1000;
      setTimeout(() => done(null, chunk), Math.max(0, due - Date.now()));
    },
  });
}

/** One PUT of the subresource with the part [offset, offset+length) of the file as its body. */
async function putPart(s: Sending, offset: number, length: number, onBytes: (n: number) => void): Promise<PartAnswer> {
  const cluster = s.kc.getCurrentCluster();
  if (cluster === null) throw new PluginError('the kubeconfig has no current cluster', 1);
  const url = new URL(`${cluster.server.replace(/\/$/, '')}${uploadPath(s.ref)}?offset=${String(offset)}&size=${String(s.size)}`);
  const options: https.RequestOptions = { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(length), accept: 'application/json' } };
  await s.kc.applyToHTTPSOptions(options);
  const request = url.protocol === 'https:' ? https.request(url, options) : http.request(url, options);
  request.setTimeout(PART_STALL_MS, () => request.destroy(new KubeTransportError(`no progress for ${String(PART_STALL_MS / 1000)} s`)));
  const answer = new Promise<{ code: number; text: string }>((resolve, reject) => {
    request.once('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.once('end', () => resolve({ code: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8').slice(0, 8192) }));
      res.once('error', reject);
    });
    request.once('error', reject);
  });
  answer.catch(() => undefined);
  if (length === 0) {
    request.end();
  } else {
    const counter = new Transform({
      transform(chunk: Buffer, _enc, done): void {
        onBytes(chunk.length);
        done(null, chunk);
      },
    });
    const stages = [createReadStream(s.file, { start: offset, end: offset + length - 1 }), ...(s.limitRate === undefined ? [] : [rateLimit(s.limitRate)]), counter];
    try {
      await pipeline([...stages, request]);
    } catch (err) {
      // The server may have answered (403, 409) and closed before the body was sent: its answer says more.
      const early = await Promise.race([answer, sleep(2000).then(() => undefined)]).catch(() => undefined);
      if (early === undefined) throw new KubeTransportError(`PUT ${url.pathname} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
  const got = await answer.catch((err: unknown) => {
    throw new KubeTransportError(`PUT ${url.pathname}: no answer`, { cause: err });
  });
  let parsed: z.infer<typeof statusBody> = {};
  try {
    parsed = statusBody.parse(JSON.parse(got.text));
  } catch {
    parsed = { message: got.text.trim() };
  }
  return { code: got.code, reason: parsed.reason ?? 'Unknown', message: parsed.message ?? `HTTP ${String(got.code)}` };
}

function refused(s: Sending, a: PartAnswer): never {
  throw explainApiError(new KubeApiError(a.code, a.reason, a.message, { method: 'PUT', path: uploadPath(s.ref) }), s.attempt);
}

/** Where the import job stands (an empty part asks): 0 for a new upload, the bytes it holds after an interruption, 'done' when it has all. */
async function uploadStanding(s: Sending): Promise<number | 'done'> {
  for (let failures = 0; ; failures++) {
    let probe: PartAnswer;
    try {
      probe = await putPart(s, 0, 0, () => undefined);
    } catch (err) {
      if (!(err instanceof KubeTransportError) || failures >= MAX_FAILURES) throw explainApiError(err, s.attempt);
      await sleep(2000);
      continue;
    }
    if (/already received all/.test(probe.message)) return 'done';
    const where = standing(probe.message);
    if (where !== undefined && (probe.code === 200 || probe.code === 409)) {
      if (where.size !== s.size) throw new StateError(`VirtualMachineImage "${s.ref.name}" is receiving an upload of ${String(where.size)} bytes, not of this file's ${String(s.size)}`);
      return where.at;
    }
    // A part still being cut off after an interruption: it is over within a moment.
    if (!/being received/.test(probe.message) || failures >= MAX_FAILURES) refused(s, probe);
    await sleep(1000);
  }
}

/**
 * Sends the file in parts, each sized to end within PART_TARGET_MS, from where the
 * import job stands: an interrupted upload, or one resumed by running the command
 * again, goes on from the last whole part (ADR 0109).
 */
async function sendFile(s: Sending, io: ImageUploadIo): Promise<void> {
  let failures = 0;
  let partBytes = FIRST_PART_BYTES;
  let offset: number | undefined;
  let shownAt = 0;
  for (;;) {
    if (offset === undefined) {
      const at = await uploadStanding(s);
      if (at === 'done') return;
      if (at > 0) io.progress(`resuming the upload at ${sentLine(at, s.size).replace(/^uploaded /, '')}`);
      offset = at;
    }
    if (offset >= s.size) return;
    const length = Math.min(partBytes, s.size - offset);
    const started = Date.now();
    const base = offset;
    let sent = 0;
    let answer: PartAnswer;
    try {
      answer = await putPart(s, base, length, (n) => {
        sent += n;
        const now = Date.now();
        if (now - shownAt >= 1000 || base + sent === s.size) {
          shownAt = now;
          io.progress(sentLine(base + sent, s.size));
        }
      });
    } catch (err) {
      if (!(err instanceof KubeTransportError) || ++failures > MAX_FAILURES) throw explainApiError(err, s.attempt);
      io.progress(`the part at byte ${String(base)} broke off (${err.message}); asking where the upload stands`);
      offset = undefined;
      await sleep(2000);
      continue;
    }
    const where = standing(answer.message);
    if (answer.code === 200 && where !== undefined) {
      failures = 0;
      offset = where.at;
      partBytes = nextPartBytes(length, Date.now() - started);
      continue;
    }
    // Another offset (a part that landed without its answer) or a relay that broke: ask again.
    if ((answer.code !== 409 && answer.code < 500) || ++failures > MAX_FAILURES) refused(s, answer);
    offset = undefined;
    await sleep(1000);
  }
}

/** Whether the user may update virtualmachineimages/upload of `ref` (SelfSubjectAccessReview, which every user may create). */
async function mayUpload(kube: KubeClient, ref: VmRef, attempt: Attempt): Promise<boolean> {
  const review = {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    spec: { resourceAttributes: { group: SUBRESOURCE_GROUP, version: SUBRESOURCE_VERSION, resource: 'virtualmachineimages', subresource: 'upload', verb: 'update', namespace: ref.namespace, name: ref.name } },
  };
  try {
    const answer = z.object({ status: z.object({ allowed: z.boolean() }) }).parse(await kube.create('/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', review));
    return answer.status.allowed;
  } catch (err) {
    throw explainApiError(err, { ...attempt, verb: 'create', resource: 'selfsubjectaccessreviews', group: 'authorization.k8s.io' });
  }
}

async function fileSize(file: string): Promise<number> {
  let size: number;
  try {
    const st = await stat(file);
    if (!st.isFile()) throw new UsageError(`--file ${file} is not a regular file`, 'image-upload');
    size = st.size;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`--file ${file} cannot be read: ${err instanceof Error ? err.message : String(err)}`, 'image-upload');
  }
  if (size === 0) throw new UsageError(`--file ${file} is empty`, 'image-upload');
  return size;
}

interface Watching {
  readonly kube: KubeClient;
  readonly ref: VmRef;
  readonly attempt: Attempt;
  readonly deadline: number;
  readonly pollMs: number;
  readonly timeoutSeconds: number;
}

async function untilReceiving(w: Watching): Promise<void> {
  for (;;) {
    const step = uploadReadiness(await readImage(w.kube, w.ref, w.attempt));
    if (step === 'send') return;
    if (step !== 'wait') throw new StateError(step.why);
    if (Date.now() > w.deadline) throw new StateError(`VirtualMachineImage "${w.ref.name}" in namespace "${w.ref.namespace}" did not start receiving within ${String(w.timeoutSeconds)} s`);
    await sleep(w.pollMs);
  }
}

async function untilSettled(w: Watching): Promise<ImageView> {
  for (;;) {
    const image = await readImage(w.kube, w.ref, w.attempt);
    const phase = image.status?.phase;
    if (phase === 'Ready') return image;
    if (phase === 'Failed') throw new PluginError(`VirtualMachineImage "${w.ref.name}" failed: ${image.status?.reason ?? 'Failed'}: ${image.status?.message ?? ''}`, 1);
    if (Date.now() > w.deadline) throw new StateError(`VirtualMachineImage "${w.ref.name}" was not Ready within ${String(w.timeoutSeconds)} s (phase ${phase ?? 'Pending'})`);
    await sleep(w.pollMs);
  }
}

/** Uploads `options.file` into the image `ref` and waits until it is Ready; throws why not. */
export async function runImageUpload(kube: KubeClient, kc: KubeConfig, ref: VmRef, options: ImageUploadOptions, io: ImageUploadIo): Promise<void> {
  const server = kc.getCurrentCluster()?.server ?? 'unknown';
  const getAttempt: Attempt = { verb: 'get', resource: 'virtualmachineimages', group: GROUP, namespace: ref.namespace, name: ref.name, server };
  const putAttempt: Attempt = { verb: 'update', resource: 'virtualmachineimages/upload', group: SUBRESOURCE_GROUP, namespace: ref.namespace, name: ref.name, server };
  const size = await fileSize(options.file);
  // Asked first: the API server would refuse the PUT only once the body is on its way.
  if (!(await mayUpload(kube, ref, putAttempt))) {
    throw explainApiError(new KubeApiError(403, 'Forbidden', 'denied by RBAC', { method: 'PUT', path: uploadPath(ref) }), putAttempt);
  }
  const w: Watching = { kube, ref, attempt: getAttempt, deadline: Date.now() + options.timeoutSeconds * 1000, pollMs: options.pollMs ?? 1000, timeoutSeconds: options.timeoutSeconds };
  await untilReceiving(w);
  io.out(`Uploading ${options.file} (${String(size)} bytes) to VirtualMachineImage "${ref.name}" in namespace "${ref.namespace}"`);
  await sendFile({ kc, ref, file: options.file, size, attempt: putAttempt, limitRate: options.limitRate }, io);
  io.out('Upload complete; the image is checked and stored');
  const image = await untilSettled(w);
  io.out(`VirtualMachineImage "${ref.name}" is Ready: ${image.status?.size ?? '?'} ${image.status?.format ?? ''} (uploaded as ${image.status?.sourceFormat ?? '?'})`);
}
