// virtualmachineimages/<name>/upload (ADR 0097): the request body is the image. It is
// relayed as a stream — Node's pipeline, so memory stays bounded and a slow importer
// slows the sender — to the upload port of the image's import job pod, which runs the
// same checks as a download (ADR 0092). The job pod is found only where the operator
// put it (operator namespace, deterministic name, storage-job labels, a StorageDomain
// as controller, the image named in its annotation); its upload port answers only
// requests with the per-job token the operator put into its environment.
import http from 'node:http';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { API_VERSION } from '@keyvirt/crds';
import { z } from 'zod';
import { ANNOTATION_IMAGE, imageJobPodName, UPLOAD_TOKEN_ENV } from '../image/import-job.ts';
import { IMPORT_UPLOAD_PATH, IMPORT_UPLOAD_PORT, IMPORT_UPLOAD_USER } from '../image/import-script.ts';
import { virtualMachineImageType } from '../image/names.ts';
import { objectMetaSchema } from '../runtime/core-schemas.ts';
import { collectionPath, coreTypes } from '../runtime/resource.ts';
import { LABEL_COMPONENT, LABEL_MANAGED_BY, MANAGED_BY, STORAGE_JOB_COMPONENT, STORAGE_JOB_SELECTOR } from '../storage/names.ts';
import { badRequest, conflict, notFound, SubresourceError } from './errors.ts';
import type { SubresourceKube } from './launcher-endpoint.ts';

const uploadImageSchema = z.object({
  metadata: objectMetaSchema.extend({ uid: z.string(), name: z.string(), namespace: z.string() }),
  spec: z.object({ source: z.looseObject({ upload: z.looseObject({}).optional() }) }),
  status: z.object({ phase: z.string().optional(), progress: z.object({ display: z.string().optional() }).optional() }).optional(),
});
export type UploadImage = z.infer<typeof uploadImageSchema>;

const jobPodSchema = z.object({
  metadata: objectMetaSchema,
  spec: z.object({ containers: z.array(z.object({ env: z.array(z.object({ name: z.string(), value: z.string().optional() })).optional() })) }),
  status: z.object({ phase: z.string().optional(), podIP: z.string().optional() }).optional(),
});
type JobPod = z.infer<typeof jobPodSchema>;
const jobPodListSchema = z.object({ items: z.array(jobPodSchema) });

export interface UploadTarget {
  readonly ip: string;
  readonly token: string;
  readonly podName: string;
}

/** The image, or 404 naming it. Listed by name: the operator watches images and holds no `get` on them (ADR 0107). */
export async function readUploadImage(client: Pick<SubresourceKube, 'request'>, namespace: string, name: string, signal?: AbortSignal): Promise<UploadImage> {
  const list = z
    .object({ items: z.array(uploadImageSchema) })
    .parse(await client.request('GET', collectionPath(virtualMachineImageType, namespace), { query: { fieldSelector: `metadata.name=${name}` }, signal }));
  const image = list.items.find((i) => i.metadata.name === name);
  if (image === undefined) throw notFound(`VirtualMachineImage ${namespace}/${name} not found`);
  return image;
}

/** Labelled as a storage job, controlled by a StorageDomain, serving the image `key` (namespace/name). */
function isImageJobPod(pod: JobPod, key: string): boolean {
  const m = pod.metadata;
  if (m.labels?.[LABEL_COMPONENT] !== STORAGE_JOB_COMPONENT || m.labels[LABEL_MANAGED_BY] !== MANAGED_BY) return false;
  if (m.annotations?.[ANNOTATION_IMAGE] !== key) return false;
  return (m.ownerReferences ?? []).some((r) => r.controller === true && r.kind === 'StorageDomain' && r.apiVersion === API_VERSION);
}

/** The import job pod of `image` that may receive its upload, or why there is none. Pure. */
export function chooseUploadTarget(image: UploadImage, operatorNamespace: string, pods: readonly JobPod[]): UploadTarget | { why: string; code: 400 | 409 } {
  const { namespace, name, uid } = image.metadata;
  const what = `VirtualMachineImage ${namespace}/${name}`;
  if (image.spec.source.upload === undefined) return { why: `${what} does not take an upload: its spec.source is not upload`, code: 400 };
  const phase = image.status?.phase ?? 'Pending';
  if (phase === 'Ready' || phase === 'Failed') return { why: `${what} is ${phase}: an upload goes to a new image`, code: 409 };
  const podName = imageJobPodName('import', namespace, name, uid);
  const pod = pods.find((p) => p.metadata.name === podName && p.metadata.namespace === operatorNamespace);
  if (pod === undefined || !isImageJobPod(pod, `${namespace}/${name}`)) return { why: `${what}: its import job has not started yet`, code: 409 };
  const ip = pod.status?.podIP;
  if (pod.status?.phase !== 'Running' || ip === undefined || ip === '') return { why: `${what}: its import job is ${pod.status?.phase ?? 'Pending'}, not yet receiving`, code: 409 };
  const token = pod.spec.containers[0]?.env?.find((e) => e.name === UPLOAD_TOKEN_ENV)?.value;
  if (token === undefined || token === '') return { why: `${what}: its import job has no upload token`, code: 409 };
  return { ip, token, podName };
}

export async function uploadTarget(client: SubresourceKube, image: UploadImage, operatorNamespace: string, signal?: AbortSignal): Promise<UploadTarget> {
  const pods = jobPodListSchema.parse(await client.request('GET', collectionPath(coreTypes.pod, operatorNamespace), { query: { labelSelector: STORAGE_JOB_SELECTOR }, signal }));
  const chosen = chooseUploadTarget(image, operatorNamespace, pods.items);
  if ('why' in chosen) throw chosen.code === 400 ? badRequest(chosen.why) : conflict(chosen.why);
  return chosen;
}

/** The declared body length of an upload; 411 without one (the importer needs it to know the image is whole). */
export function uploadLength(header: string | undefined): number {
  if (header === undefined || !/^\d{1,15}$/.test(header)) throw new SubresourceError(411, 'BadRequest', 'an upload needs a Content-Length header (the image size in bytes)');
  const length = Number(header);
  if (length === 0) throw badRequest('the upload is empty');
  return length;
}

/** The largest part of an upload in parts (ADR 0109): the client sizes its parts by its rate so that each ends well within the API server's request timeout. */
export const MAX_UPLOAD_PART_BYTES = 64 * 1024 * 1024;

/** One request of an upload: the whole image (no query), or the part at `offset` of an image of `size` bytes. */
export interface UploadPart {
  readonly length: number;
  readonly part?: { readonly offset: number; readonly size: number };
}

const COUNT = /^\d{1,15}$/;

/** The part a request carries, from its target's query and its Content-Length; a 400/411/413 naming the field otherwise. Pure. */
export function uploadPart(target: string | undefined, contentLength: string | undefined): UploadPart {
  const at = (target ?? '').indexOf('?');
  const query = new URLSearchParams(at < 0 ? '' : (target ?? '').slice(at + 1));
  const keys = [...query.keys()];
  if (keys.length === 0) return { length: uploadLength(contentLength) };
  const unknown = keys.find((k) => k !== 'offset' && k !== 'size');
  if (unknown !== undefined) throw badRequest(`query parameter ${JSON.stringify(unknown.slice(0, 40))} is not known: an upload in parts takes offset and size`);
  for (const field of ['offset', 'size'] as const) {
    const values = query.getAll(field);
    if (values.length !== 1 || !COUNT.test(values[0] ?? '')) throw badRequest(`${field} must be given once, as a byte count (0 to 15 digits)`);
  }
  const offset = Number(query.get('offset'));
  const size = Number(query.get('size'));
  if (size === 0) throw badRequest('size: the image is empty');
  if (contentLength === undefined || !COUNT.test(contentLength)) throw new SubresourceError(411, 'BadRequest', 'a part of an upload needs a Content-Length header');
  const length = Number(contentLength);
  if (length > MAX_UPLOAD_PART_BYTES) throw new SubresourceError(413, 'RequestEntityTooLarge', `a part of an upload holds at most ${MAX_UPLOAD_PART_BYTES} bytes, not ${length}`);
  if (offset + length > size) throw badRequest(`the part of ${length} bytes at offset ${offset} ends past the size ${size}`);
  return { length, part: { offset, size } };
}

const MAX_ANSWER_BYTES = 4096;

/** Streams `req` (its body: `upload.length` bytes, the whole image or one part) to the job pod; resolves with what the importer said once it has the whole image. */
export async function relayUpload(req: Readable, target: UploadTarget, upload: UploadPart, port = IMPORT_UPLOAD_PORT): Promise<string> {
  const { length, part } = upload;
  const auth = Buffer.from(`${IMPORT_UPLOAD_USER}:${target.token}`).toString('base64');
  const upstream = http.request({
    host: target.ip,
    port,
    path: part === undefined ? IMPORT_UPLOAD_PATH : `${IMPORT_UPLOAD_PATH}?offset=${String(part.offset)}&size=${String(part.size)}`,
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(length), authorization: `Basic ${auth}` },
    timeout: 60_000,
  });
  upstream.on('timeout', () => upstream.destroy(new Error('the import job stopped reading')));
  const answer = new Promise<{ code: number; text: string }>((resolve, reject) => {
    upstream.once('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (size < MAX_ANSWER_BYTES) chunks.push(chunk.subarray(0, MAX_ANSWER_BYTES - size));
        size += chunk.length;
      });
      res.once('end', () => resolve({ code: res.statusCode ?? 502, text: Buffer.concat(chunks).toString('utf8').trim() }));
      res.once('error', reject);
    });
    upstream.once('error', reject);
  });
  answer.catch(() => undefined);
  let got: { code: number; text: string };
  try {
    await pipeline(req, upstream);
  } catch (err) {
    // The importer may have refused (409, 400) and closed before the whole body was sent: its answer says why.
    const early = await Promise.race([answer, new Promise<undefined>((r) => setTimeout(r, 1000, undefined))]).catch(() => undefined);
    upstream.destroy();
    if (early === undefined) throw new SubresourceError(502, 'ServiceUnavailable', `the upload to the import job broke off: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  try {
    got = await answer;
  } catch (err) {
    throw new SubresourceError(502, 'ServiceUnavailable', `the import job did not answer the upload: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const text = got.text.replace(/[^\x20-\x7e]/g, ' ').slice(0, 500);
  if (got.code === 200) return text;
  if (got.code === 409) throw conflict(`the import job refused the upload: ${text}`);
  if (got.code === 400 || got.code === 411) throw badRequest(`the import job refused the upload: ${text}`);
  throw new SubresourceError(502, 'ServiceUnavailable', `the import job answered ${got.code}: ${text}`);
}
