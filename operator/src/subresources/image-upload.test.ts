import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION } from '@keyvirt/crds';
import { SubresourceError } from './errors.ts';
import { chooseUploadTarget, MAX_UPLOAD_PART_BYTES, uploadLength, uploadPart, type UploadImage } from './image-upload.ts';
import { imageJobPodName } from '../image/import-job.ts';

const image = (source: UploadImage['spec']['source'], phase?: string): UploadImage => ({
  metadata: { name: 'img', namespace: 'team', uid: 'u-1' },
  spec: { source },
  ...(phase === undefined ? {} : { status: { phase } }),
});
const podName = imageJobPodName('import', 'team', 'img', 'u-1');

type Over = { name?: string; namespace?: string; annotation?: string; ownerKind?: string; phase?: string; ip?: string; token?: string | undefined; component?: string };
const pod = (o: Over = {}): Parameters<typeof chooseUploadTarget>[2][number] => ({
  metadata: {
    name: o.name ?? podName,
    namespace: o.namespace ?? 'keyvirt-system',
    labels: { 'app.kubernetes.io/component': o.component ?? 'storage-job', 'app.kubernetes.io/managed-by': 'keyvirt-operator' },
    annotations: { 'keyvirt.io/virtual-machine-image': o.annotation ?? 'team/img' },
    ownerReferences: [{ apiVersion: API_VERSION, kind: o.ownerKind ?? 'StorageDomain', name: 'sd', uid: 'sd-1', controller: true }],
  },
  spec: { containers: [{ env: 'token' in o && o.token === undefined ? [] : [{ name: 'KEYVIRT_UPLOAD_TOKEN', value: o.token ?? 't0k' }] }] },
  status: { phase: o.phase ?? 'Running', podIP: o.ip ?? '10.0.0.7' },
});

void describe('the job pod an upload goes to', () => {
  void it('is the running import job of the image, with its token', () => {
    assert.deepEqual(chooseUploadTarget(image({ upload: {} }, 'Importing'), 'keyvirt-system', [pod()]), { ip: '10.0.0.7', token: 't0k', podName });
  });
  const refused: [string, UploadImage, Over, 400 | 409, RegExp][] = [
    ['an image from a URL', image({ http: { url: 'http://x' } }), {}, 400, /does not take an upload/],
    ['a Ready image', image({ upload: {} }, 'Ready'), {}, 409, /is Ready/],
    ['a Failed image', image({ upload: {} }, 'Failed'), {}, 409, /is Failed/],
    ['no job yet', image({ upload: {} }), { name: 'other' }, 409, /has not started/],
    ['a namesake pod in another namespace', image({ upload: {} }), { namespace: 'team' }, 409, /has not started/],
    ['a pod serving another image', image({ upload: {} }), { annotation: 'team/other' }, 409, /has not started/],
    ['a pod not controlled by a domain', image({ upload: {} }), { ownerKind: 'ReplicaSet' }, 409, /has not started/],
    ['a pod not labelled as a storage job', image({ upload: {} }), { component: 'launcher' }, 409, /has not started/],
    ['a pending job', image({ upload: {} }), { phase: 'Pending' }, 409, /is Pending, not yet receiving/],
    ['a job without a token', image({ upload: {} }), { token: undefined }, 409, /no upload token/],
  ];
  for (const [what, img, over, code, message] of refused) {
    void it(`none for ${what} (${String(code)})`, () => {
      const got = chooseUploadTarget(img, 'keyvirt-system', [pod(over)]);
      assert.ok('why' in got, JSON.stringify(got));
      assert.equal(got.code, code);
      assert.match(got.why, message);
    });
  }
});

void describe('the upload length', () => {
  void it('is the Content-Length', () => assert.equal(uploadLength('15400960'), 15_400_960));
  for (const [header, code] of [[undefined, 411], ['', 411], ['-1', 411], ['1e9', 411], ['0', 400]] as const) {
    void it(`refuses ${String(header)} with ${String(code)}`, () => {
      assert.throws(() => uploadLength(header), (err: unknown) => err instanceof SubresourceError && err.code === code);
    });
  }
});

void describe('the part of an upload (ADR 0109)', () => {
  const base = '/apis/subresources.keyvirt.io/v1alpha1/namespaces/ns/virtualmachineimages/img/upload';
  void it('without a query: the whole image', () => assert.deepEqual(uploadPart(base, '4096'), { length: 4096 }));
  void it('with offset and size: that part', () => assert.deepEqual(uploadPart(`${base}?offset=1048576&size=3473408`, '1048576'), { length: 1_048_576, part: { offset: 1_048_576, size: 3_473_408 } }));
  void it('an empty part asks where the upload stands', () => assert.deepEqual(uploadPart(`${base}?size=10&offset=0`, '0'), { length: 0, part: { offset: 0, size: 10 } }));
  const refused: [string, string, string | undefined, number, RegExp][] = [
    ['a negative offset', '?offset=-1&size=10', '1', 400, /^offset must be given once, as a byte count/],
    ['a size that is not a number', '?offset=0&size=ten', '1', 400, /^size must be given once/],
    ['offset without size', '?offset=0', '1', 400, /^size must be given once/],
    ['offset twice', '?offset=0&offset=5&size=10', '1', 400, /^offset must be given once/],
    ['an unknown parameter', '?offset=0&size=10&token=x', '1', 400, /query parameter "token" is not known/],
    ['an empty image', '?offset=0&size=0', '0', 400, /^size: the image is empty/],
    ['a part past the size', '?offset=8&size=10', '3', 400, /the part of 3 bytes at offset 8 ends past the size 10/],
    ['no Content-Length', '?offset=0&size=10', undefined, 411, /needs a Content-Length/],
    ['an oversize part', `?offset=0&size=${String(2 ** 40)}`, String(MAX_UPLOAD_PART_BYTES + 1), 413, /holds at most/],
    ['a 16-digit offset', '?offset=1234567890123456&size=10', '1', 400, /^offset must be given once/],
  ];
  for (const [what, query, length, code, message] of refused) {
    void it(`refuses ${what} with ${String(code)}`, () => {
      assert.throws(() => uploadPart(`${base}${query}`, length), (err: unknown) => err instanceof SubresourceError && err.code === code && message.test(err.message));
    });
  }
});
