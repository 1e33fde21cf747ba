import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { API_VERSION } from '@keyvirt/crds';
import { SubresourceError } from './errors.ts';
import { chooseUploadTarget, uploadLength, type UploadImage } from './image-upload.ts';
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
