// VirtualMachineImage keyvirt.io/v1alpha1 (namespaced): a disk image imported onto a
// StorageDomain from an HTTP(S) URL, an OCI image in KubeVirt's containerDisk layout,
// an upload, or an existing PersistentVolumeClaim of the image's namespace, checked
// and converted with qemu-img. VMs of the same namespace use it as a backing image.
import { z } from 'zod';
import { API_VERSION } from '../api-group.ts';
import { conditions, dnsSubdomain, int32, int64, ObjectMeta, requiredString } from '../fields.ts';
import { unless, withRules } from '../validation-rule.ts';

export const IMAGE_FORMATS = ['qcow2', 'raw'] as const;
export type ImageFormat = (typeof IMAGE_FORMATS)[number];

export const IMAGE_PHASES = ['Pending', 'Importing', 'WaitingForUpload', 'Ready', 'Failed'] as const;
export type ImagePhase = (typeof IMAGE_PHASES)[number];

/** Why an import failed or waits, as `status.conditions[].reason` and `status.reason` say it. */
export const IMAGE_FAILURE_REASONS = [
  'SourceNotFound',
  'SourceUnreachable',
  'SourceHttpError',
  'ChecksumMismatch',
  'UnsupportedFormat',
  'CorruptImage',
  'BackingFileRefused',
  'DataFileRefused',
  'NoDiskInImage',
  'RegistryError',
  'NoSpace',
  'ImportFailed',
] as const;
export type ImageFailureReason = (typeof IMAGE_FAILURE_REASONS)[number];

const HTTP_URL = /^https?:\/\/[^\s/?#@]+(\/[^\s]*)?$/;
const SHA256 = /^[0-9a-f]{64}$/;
/** registry[:port]/repository[:tag|@sha256:digest] */
const OCI_REFERENCE = /^[a-z0-9.-]+(:[0-9]{1,5})?\/[a-z0-9]+([._/-][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})?$/;

export const HttpImageSource = z
  .object({
    url: requiredString('source.http.url')
      .max(2048, { error: 'source.http.url must be at most 2048 characters' })
      .regex(HTTP_URL, { error: 'source.http.url must be an http:// or https:// URL without user credentials' })
      .describe('The image URL (http or https); redirects are followed, at most 5.'),
    sha256: z
      .string()
      .regex(SHA256, { error: 'source.http.sha256 must be 64 lower-case hexadecimal digits' })
      .optional()
      .describe('The SHA-256 of the file as served; the import fails with ChecksumMismatch when it differs.'),
  })
  .describe('Download the image over HTTP(S).');

export const OciImageSource = z
  .object({
    reference: requiredString('source.oci.reference')
      .max(512, { error: 'source.oci.reference must be at most 512 characters' })
      .regex(OCI_REFERENCE, { error: 'source.oci.reference must be registry/repository[:tag|@sha256:digest], e.g. registry.example:5000/images/debian:12' })
      .describe('The image reference; its disk file sits under /disk/ in a layer (KubeVirt containerDisk).'),
    insecure: z.boolean().default(false).describe('Speak plain HTTP to the registry (test and local registries).'),
  })
  .describe('Pull a containerDisk image from an OCI registry (registry API v2).');

export const PvcImageSource = z
  .object({
    claimName: dnsSubdomain('source.pvc.claimName').describe('A bound PersistentVolumeClaim of the image namespace holding the disk as disk.img (or its only file).'),
  })
  .describe('Copy the disk from an existing claim of the same namespace.');

export const UploadImageSource = z.object({}).strict().describe('Wait for an upload through the virtualmachineimages/upload subresource.');

export const VirtualMachineImageSpec = withRules(
  z
    .object({
      storageDomain: dnsSubdomain('storageDomain').describe('The StorageDomain (cluster-scoped) the image is imported onto.'),
      format: z.enum(IMAGE_FORMATS, { error: 'format must be qcow2 or raw' }).default('qcow2').describe('The format the image is stored in: qcow2 (the default) or raw.'),
      source: z
        .object({
          http: HttpImageSource.optional(),
          oci: OciImageSource.optional(),
          pvc: PvcImageSource.optional(),
          upload: UploadImageSource.optional(),
        })
        .describe('Where the image comes from: exactly one of http, oci, pvc, upload.'),
    })
    .describe('What to import and where.'),
  [
    {
      cel: '[has(self.source.http), has(self.source.oci), has(self.source.pvc), has(self.source.upload)].filter(x, x).size() == 1',
      message: 'source needs exactly one of http, oci, pvc or upload',
      fieldPath: '.source',
      violations: (s) => unless([s.source.http, s.source.oci, s.source.pvc, s.source.upload].filter((x) => x !== undefined).length === 1, ['source']),
    },
    { cel: 'self == oldSelf', message: 'an image cannot be changed; create another one', transition: true, violations: () => [] },
  ],
);
export type VirtualMachineImageSpec = z.infer<typeof VirtualMachineImageSpec>;

export const VirtualMachineImageStatus = z
  .object({
    phase: z.enum(IMAGE_PHASES).optional().describe('Pending, Importing, WaitingForUpload, Ready or Failed.'),
    reason: z.string().max(128).optional().describe('Why the import failed (or waits), in CamelCase, e.g. ChecksumMismatch.'),
    message: z.string().max(4096).optional().describe('Why the import failed (or waits), for people.'),
    progress: z
      .object({
        bytes: int64(0).describe('Bytes of the source read so far.'),
        totalBytes: int64(0).optional().describe('The size of the source, when known.'),
        percent: int32(0, 100).optional().describe('bytes / totalBytes, in percent.'),
        bytesPerSecond: int64(0).optional().describe('The recent transfer rate.'),
        display: z.string().max(64).optional().describe('The progress for people, e.g. "42% 120Mi/s".'),
      })
      .optional()
      .describe('How far the import is.'),
    sourceFormat: z.string().max(32).optional().describe('The format qemu-img detected in the source.'),
    format: z.enum(IMAGE_FORMATS).optional().describe('The format of the stored image.'),
    virtualSize: int64(0).optional().describe('The disk size the guest sees, in bytes.'),
    size: z.string().max(32).optional().describe('The virtual size for people, e.g. 2Gi.'),
    allocatedBytes: int64(0).optional().describe('The space the image takes on the domain.'),
    path: z.string().max(1024).optional().describe('The image file relative to the domain root.'),
    importDurationMs: int64(0).optional().describe('How long the import job took, from its start to its result.'),
    conditions: conditions(),
    observedGeneration: int64(0).optional().describe('The .metadata.generation this status reflects.'),
  })
  .describe('The observed state of a VirtualMachineImage, written by the operator only.');
export type VirtualMachineImageStatus = z.infer<typeof VirtualMachineImageStatus>;

export const VirtualMachineImage = z
  .object({
    apiVersion: z.literal(API_VERSION),
    kind: z.literal('VirtualMachineImage'),
    metadata: ObjectMeta,
    spec: VirtualMachineImageSpec,
    status: VirtualMachineImageStatus.optional(),
  })
  .describe('A disk image on a StorageDomain (namespaced): imported once, then used read-only as the backing image of VM disks in its namespace.');
export type VirtualMachineImage = z.infer<typeof VirtualMachineImage>;
export type VirtualMachineImageInput = z.input<typeof VirtualMachineImage>;

/** Where an image lives on its domain, relative to the domain root. */
export function virtualMachineImagePath(namespace: string, name: string, format: ImageFormat): string {
  return `vmimages/${namespace}/${name}.${format}`;
}
