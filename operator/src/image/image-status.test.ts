import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { VirtualMachineImage, VirtualMachineImageStatus } from '@keyvirt/crds';
import { humanBytes, imageStatus, type DomainView, type JobView } from './image-status.ts';
import { imageJobEnv, imageJobPod, imageJobPodName, importSource, parseImportResult } from './import-job.ts';
import { progressUrl } from './import-progress.ts';

const NOW = '2026-11-29T01:00:00Z';

function image(status?: VirtualMachineImageStatus, source: VirtualMachineImage['spec']['source'] = { http: { url: 'http://images.example/d.qcow2' } }): VirtualMachineImage {
  return {
    apiVersion: 'keyvirt.io/v1alpha1',
    kind: 'VirtualMachineImage',
    metadata: { name: 'debian', namespace: 'team', uid: 'u-1', generation: 1 },
    spec: { storageDomain: 'images', format: 'qcow2', source },
    ...(status === undefined ? {} : { status }),
  };
}

const ready: DomainView = { state: 'ready' };
const success = { op: 'import', format: 'qcow2', sourceFormat: 'raw', virtualSize: 2 * 1024 ** 3, allocatedBytes: 1000, sourceBytes: 2 * 1024 ** 3, durationMs: 4200, capacityBytes: 1, usedBytes: 1, freeBytes: 0 } as const;

void describe('imageStatus', () => {
  const cases: { name: string; status?: VirtualMachineImageStatus; domain: DomainView; job: JobView; phase: string; reason?: string; check?: (s: VirtualMachineImageStatus) => void }[] = [
    { name: 'a missing domain waits', domain: { state: 'missing' }, job: { state: 'none' }, phase: 'Pending', reason: 'StorageDomainNotFound' },
    { name: 'a domain in maintenance waits', domain: { state: 'not-ready', phase: 'Maintenance' }, job: { state: 'none' }, phase: 'Pending', reason: 'StorageDomainNotReady' },
    { name: 'a storageClass domain cannot hold images', domain: { state: 'unsupported', message: 'no volume' }, job: { state: 'none' }, phase: 'Failed', reason: 'ImportFailed' },
    { name: 'a job just started', domain: ready, job: { state: 'running' }, phase: 'Importing', check: (s) => assert.equal(s.progress?.display, 'starting') },
    {
      name: 'a running job shows percent and rate',
      domain: ready,
      job: { state: 'running', progress: { bytes: 512 * 1024 ** 2, totalBytes: 2 * 1024 ** 3, stage: 'downloading' }, bytesPerSecond: 120 * 1024 ** 2 },
      phase: 'Importing',
      check: (s) => assert.deepEqual(s.progress, { bytes: 512 * 1024 ** 2, totalBytes: 2 * 1024 ** 3, percent: 25, bytesPerSecond: 120 * 1024 ** 2, display: '25% 120Mi/s' }),
    },
    {
      name: 'a conversion shows its stage',
      domain: ready,
      job: { state: 'running', progress: { bytes: 100, totalBytes: 100, stage: 'converting' } },
      phase: 'Importing',
      check: (s) => assert.equal(s.progress?.display, '100% converting'),
    },
    {
      name: 'an upload job waiting for its bytes says so',
      domain: ready,
      job: { state: 'running', progress: { bytes: 0, totalBytes: 0, stage: 'waiting' } },
      phase: 'Importing',
      check: (s) => assert.equal(s.progress?.display, 'waiting for upload'),
    },
    {
      name: 'an upload shows percent and rate like a download',
      domain: ready,
      job: { state: 'running', progress: { bytes: 64 * 1024 ** 2, totalBytes: 256 * 1024 ** 2, stage: 'uploading' }, bytesPerSecond: 30 * 1024 ** 2 },
      phase: 'Importing',
      check: (s) => assert.equal(s.progress?.display, '25% 30Mi/s'),
    },
    {
      name: 'an unknown total shows bytes',
      domain: ready,
      job: { state: 'running', progress: { bytes: 3 * 1024 ** 2, totalBytes: 0, stage: 'downloading' } },
      phase: 'Importing',
      check: (s) => assert.equal(s.progress?.display, '3Mi'),
    },
    {
      name: 'success fills size, formats and path',
      domain: ready,
      job: { state: 'succeeded', result: success, path: 'vmimages/team/debian.qcow2' },
      phase: 'Ready',
      check: (s) => {
        assert.equal(s.size, '2Gi');
        assert.equal(s.sourceFormat, 'raw');
        assert.equal(s.path, 'vmimages/team/debian.qcow2');
        assert.equal(s.conditions?.[0]?.status, 'True');
      },
    },
    { name: 'a checksum mismatch is final', domain: ready, job: { state: 'failed', reason: 'ChecksumMismatch', message: 'sha256 differs' }, phase: 'Failed', reason: 'ChecksumMismatch' },
    { name: 'an unknown reason is ImportFailed', domain: ready, job: { state: 'failed', reason: 'Weird', message: 'x' }, phase: 'Failed', reason: 'ImportFailed' },
    {
      name: 'a network failure waits for the next attempt',
      domain: ready,
      job: { state: 'failed', reason: 'SourceUnreachable', message: 'connection reset', retryInMs: 30_000 },
      phase: 'Importing',
      reason: 'SourceUnreachable',
      check: (s) => assert.match(s.message ?? '', /trying again in 30 s/),
    },
    { name: 'a Ready image stays Ready', status: { phase: 'Ready', size: '2Gi' }, domain: { state: 'missing' }, job: { state: 'none' }, phase: 'Ready' },
    { name: 'a final failure stays', status: { phase: 'Failed', reason: 'CorruptImage' }, domain: ready, job: { state: 'none' }, phase: 'Failed', reason: 'CorruptImage' },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      const s = imageStatus(image(c.status), { domain: c.domain, job: c.job, now: NOW });
      assert.equal(s.phase, c.phase);
      if (c.reason !== undefined) assert.equal(s.reason, c.reason);
      assert.equal(s.observedGeneration, 1);
      c.check?.(s);
    });
  }

  void it('keeps the condition transition time while the reason holds', () => {
    const first = imageStatus(image(), { domain: ready, job: { state: 'running' }, now: NOW });
    const later = imageStatus(image(first), { domain: ready, job: { state: 'running' }, now: '2026-11-29T01:05:00Z' });
    assert.equal(later.conditions?.[0]?.lastTransitionTime, NOW);
  });

  void it('names a source this version does not serve', () => {
    const s = imageStatus(image(undefined, { upload: {} }), { domain: ready, job: { state: 'none' }, sourceProblem: 'upload imports are not served', now: NOW });
    assert.equal(s.phase, 'Failed');
  });
});

void describe('import jobs', () => {
  void it('reads OCI references: tag, digest, default tag, scheme', () => {
    assert.deepEqual(importSource(image(undefined, { oci: { reference: 'registry.example:5000/images/debian:12', insecure: true } })), {
      kind: 'oci', scheme: 'http', registry: 'registry.example:5000', repository: 'images/debian', reference: '12',
    });
    const digest = `sha256:${'a'.repeat(64)}`;
    assert.equal(importSource(image(undefined, { oci: { reference: `r.example/x@${digest}`, insecure: false } })).kind, 'oci');
    assert.deepEqual(importSource(image(undefined, { oci: { reference: `r.example/x@${digest}`, insecure: false } })), { kind: 'oci', scheme: 'https', registry: 'r.example', repository: 'x', reference: digest });
    assert.deepEqual(importSource(image(undefined, { oci: { reference: 'r.example/x', insecure: false } })), { kind: 'oci', scheme: 'https', registry: 'r.example', repository: 'x', reference: 'latest' });
    assert.deepEqual(importSource(image(undefined, { pvc: { claimName: 'c' } })), { kind: 'pvc', claimName: 'c' });
  });

  void it('renders a storage-job pod without credentials, with the progress port and the image annotation', () => {
    const owner = { apiVersion: 'keyvirt.io/v1alpha1', kind: 'StorageDomain', name: 'images', uid: 'd-1', controller: true };
    const spec = { op: 'import', name: imageJobPodName('import', 'team', 'debian', 'u-1'), namespace: 'keyvirt-system', domain: 'images', claimName: 'keyvirt-sd-images', image: 'keyvirt/launcher:1', owner, imageKey: 'team/debian', target: 'vmimages/team/debian.qcow2', work: 'vmimages/team/.debian.u-1.import', format: 'qcow2', source: { kind: 'http', url: 'http://x/d', sha256: 'a'.repeat(64) } } as const;
    const pod = imageJobPod(spec) as { metadata: { labels: Record<string, string>; annotations: Record<string, string> }; spec: { automountServiceAccountToken: boolean; containers: { ports?: unknown[]; securityContext: { capabilities: { drop: string[] } } }[] } };
    assert.equal(pod.metadata.labels['app.kubernetes.io/component'], 'storage-job');
    assert.equal(pod.metadata.annotations['keyvirt.io/virtual-machine-image'], 'team/debian');
    assert.equal(pod.spec.automountServiceAccountToken, false);
    assert.deepEqual(pod.spec.containers[0]?.securityContext.capabilities.drop, ['ALL']);
    assert.equal(pod.spec.containers[0]?.ports?.length, 1);
    assert.deepEqual(imageJobEnv(spec).find((e) => e.name === 'KEYVIRT_SHA256')?.value, 'a'.repeat(64));
    assert.notEqual(imageJobPodName('import', 'team', 'debian', 'u-1'), imageJobPodName('import', 'team', 'debian', 'u-2'), 'a namesake gets its own job');
  });

  void it('parses results and refuses anything else', () => {
    assert.equal(parseImportResult(JSON.stringify(success))?.op, 'import');
    assert.deepEqual(parseImportResult('{"op":"import","failed":true,"reason":"CorruptImage","message":"bad"}'), { op: 'import', failed: true, reason: 'CorruptImage', message: 'bad' });
    assert.equal(parseImportResult('{"op":"import","failed":true,"reason":"a b","message":"x"}'), undefined);
    assert.equal(parseImportResult('not json'), undefined);
    assert.equal(parseImportResult(undefined), undefined);
  });

  void it('asks only IP addresses for progress', () => {
    assert.equal(progressUrl('10.1.2.3'), 'http://10.1.2.3:8470/progress');
    assert.equal(progressUrl('fd00::5'), 'http://[fd00::5]:8470/progress');
    assert.equal(progressUrl('evil.example'), undefined);
    assert.equal(progressUrl(undefined), undefined);
  });

  void it('says sizes the way people read them', () => {
    assert.deepEqual([0, 512, 1024, 1536, 64 * 1024 ** 2, 2.5 * 1024 ** 3, 150 * 1024 ** 2].map(humanBytes), ['0', '512', '1Ki', '1.5Ki', '64Mi', '2.5Gi', '150Mi']);
  });
});
