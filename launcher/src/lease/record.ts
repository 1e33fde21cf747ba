// The lease record (ADR 0063): one 4096-byte block at offset 0 of the lease file, a
// JSON object padded with spaces, whose `checksum` is the sha256 of the JSON written
// with an empty checksum. A block that does not parse or whose checksum is wrong is
// `invalid` (a torn or foreign write): never trusted, only watched.
import { z } from 'zod';

export const LEASE_BLOCK_SIZE = 4096;
export const LEASE_RECORD_VERSION = 1;

const holderId = z.string().regex(/^[A-Za-z0-9._-]{1,128}$/);

export const LeaseRecordSchema = z.strictObject({
  version: z.literal(LEASE_RECORD_VERSION),
  holder: holderId,
  node: z.string().max(253),
  generation: z.int().min(1),
  counter: z.int().min(0),
  state: z.enum(['held', 'released']),
  successor: holderId.optional(),
  renewIntervalMs: z.int().min(1),
  fenceTimeoutMs: z.int().min(1),
  acquireTimeoutMs: z.int().min(1),
});
export type LeaseRecord = z.infer<typeof LeaseRecordSchema>;

/** What a read of the lease file found. `key` identifies the content: any change of it restarts an acquirer's wait. */
export type LeaseObservation =
  | { kind: 'empty'; key: string }
  | { kind: 'record'; key: string; record: LeaseRecord }
  | { kind: 'invalid'; key: string; why: string };

export class LeaseRecordError extends Error {
  override name = 'LeaseRecordError';
}

/** node:crypto is loaded by the first lease, not by every launcher (ADR 0122). */
function sha256Hex(data: string | Buffer): string {
  return process.getBuiltinModule('node:crypto').createHash('sha256').update(data).digest('hex');
}

function checksumOf(json: string): string {
  return sha256Hex(json);
}

/** The record as one block: JSON with its checksum, padded with spaces to 4096 bytes. */
export function encodeLeaseRecord(record: LeaseRecord): Buffer {
  const valid = LeaseRecordSchema.parse(record);
  const body = JSON.stringify({ ...valid, checksum: '' });
  const json = JSON.stringify({ ...valid, checksum: checksumOf(body) });
  const bytes = Buffer.from(json, 'utf8');
  if (bytes.length > LEASE_BLOCK_SIZE) throw new LeaseRecordError(`lease record of ${bytes.length} bytes does not fit one block`);
  const block = Buffer.alloc(LEASE_BLOCK_SIZE, 0x20);
  bytes.copy(block);
  return block;
}

/** Interprets the bytes read from the lease file (fewer than a block for a new or truncated file). */
export function decodeLeaseBlock(bytes: Buffer): LeaseObservation {
  const key = sha256Hex(bytes);
  if (bytes.length === 0 || bytes.every((b) => b === 0)) return { kind: 'empty', key: 'empty' };
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8').trimEnd());
  } catch {
    return { kind: 'invalid', key, why: 'not JSON' };
  }
  const withSum = z.looseObject({ checksum: z.string() }).safeParse(parsed);
  if (!withSum.success) return { kind: 'invalid', key, why: 'no checksum' };
  const { checksum, ...fields } = withSum.data;
  const record = LeaseRecordSchema.safeParse(fields);
  if (!record.success) return { kind: 'invalid', key, why: `bad record: ${record.error.issues[0]?.message ?? 'unknown'}` };
  if (checksumOf(JSON.stringify({ ...record.data, checksum: '' })) !== checksum) return { kind: 'invalid', key, why: 'checksum mismatch' };
  const r = record.data;
  return { kind: 'record', key: `${r.holder}/${r.generation}/${r.counter}/${r.state}/${r.successor ?? ''}`, record: r };
}
