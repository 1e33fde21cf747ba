// `kubectl keyvirt image-upload IMAGE --file PATH`: waits until the image's import job
// receives, streams the file through the API server to virtualmachineimages/upload
// (ADR 0097) with its length, shows the bytes sent, then waits for the image to be
// Ready or prints why it failed. The file is read as a stream: memory stays bounded
// and the API server's pace sets the reading pace.
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
      progress: z.looseObject({ display: z.string().optional() }).optional(),
    })
    .optional(),
});
export type ImageView = z.infer<typeof ImageView>;

export interface ImageUploadOptions {
  readonly file: string;
  readonly timeoutSeconds: number;
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
  return image.status?.progress?.display === UPLOAD_WAITING ? 'send' : 'wait';
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
}

async function sendFile({ kc, ref, file, size, attempt }: Sending, io: ImageUploadIo): Promise<string> {
  const cluster = kc.getCurrentCluster();
  if (cluster === null) throw new PluginError('the kubeconfig has no current cluster', 1);
  const path = uploadPath(ref);
  const url = new URL(cluster.server.replace(/\/$/, '') + path);
  const options: https.RequestOptions = { method: 'PUT', headers: { 'content-type': 'application/octet-stream', 'content-length': String(size), accept: 'application/json' } };
  await kc.applyToHTTPSOptions(options);
  const request = url.protocol === 'https:' ? https.request(url, options) : http.request(url, options);
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
  let sent = 0;
  let shownAt = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc, done): void {
      sent += chunk.length;
      const now = Date.now();
      if (now - shownAt >= 1000 || sent === size) {
        shownAt = now;
        io.progress(sentLine(sent, size));
      }
      done(null, chunk);
    },
  });
  try {
    await pipeline(createReadStream(file), counter, request);
  } catch (err) {
    // The server may have answered (403, 409) and closed before the body was sent: its answer says more.
    const early = await Promise.race([answer, sleep(2000).then(() => undefined)]).catch(() => undefined);
    if (early === undefined) throw explainApiError(new KubeTransportError(`PUT ${path} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err }), attempt);
  }
  let got: { code: number; text: string };
  try {
    got = await answer;
  } catch (err) {
    throw explainApiError(new KubeTransportError(`PUT ${path}: no answer`, { cause: err }), attempt);
  }
  let parsed: z.infer<typeof statusBody> = {};
  try {
    parsed = statusBody.parse(JSON.parse(got.text));
  } catch {
    parsed = { message: got.text.trim() };
  }
  if (got.code >= 200 && got.code < 300) return parsed.message ?? 'received';
  throw explainApiError(new KubeApiError(got.code, parsed.reason ?? 'Unknown', parsed.message ?? `HTTP ${String(got.code)}`, { method: 'PUT', path }), attempt);
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
  await sendFile({ kc, ref, file: options.file, size, attempt: putAttempt }, io);
  io.out('Upload complete; the image is checked and stored');
  const image = await untilSettled(w);
  io.out(`VirtualMachineImage "${ref.name}" is Ready: ${image.status?.size ?? '?'} ${image.status?.format ?? ''} (uploaded as ${image.status?.sourceFormat ?? '?'})`);
}
