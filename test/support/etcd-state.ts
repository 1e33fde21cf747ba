// What a benchmark's earlier runs left in the local cluster's etcd, read through etcd's
// own JSON gateway (the v3 API over HTTP on its loopback client URL): the store's
// revision, the database file's size and how much of it live keys use. A burst of
// thousands of objects and their deletion leaves history the API server compacts only
// every 5 min, and free pages only a defragmentation returns.
import { z } from 'zod';

const statusSchema = z.object({
  header: z.object({ revision: z.coerce.number().int().nonnegative() }),
  dbSize: z.coerce.number().int().nonnegative(),
  dbSizeInUse: z.coerce.number().int().nonnegative(),
});

export interface EtcdState {
  readonly revision: number;
  readonly dbSizeMiB: number;
  readonly dbInUseMiB: number;
}

/** etcd's revision and database size now (`maintenance/status`). */
export async function etcdState(etcdUrl: string): Promise<EtcdState> {
  const res = await fetch(`${etcdUrl}/v3/maintenance/status`, { method: 'POST', body: '{}', signal: AbortSignal.timeout(10_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`etcd status: HTTP ${res.status}: ${text.slice(0, 300)}`);
  const s = statusSchema.parse(JSON.parse(text));
  return { revision: s.header.revision, dbSizeMiB: s.dbSize / 2 ** 20, dbInUseMiB: s.dbSizeInUse / 2 ** 20 };
}

/** etcd's state, or the reason it could not be read (a benchmark's diagnostic must not end its run). */
export async function etcdStateOrWhy(etcdUrl: string): Promise<EtcdState | string> {
  return etcdState(etcdUrl).catch((err: unknown) => String(err));
}

/** `etcd_<prefix>revision=… etcd_<prefix>db_mib=… etcd_<prefix>db_in_use_mib=…` for a BENCH line (`n/a` when unread). */
export function etcdFields(prefix: string, s: EtcdState | string): string {
  if (typeof s === 'string') return ` etcd_${prefix}revision=n/a etcd_${prefix}db_mib=n/a etcd_${prefix}db_in_use_mib=n/a`;
  return ` etcd_${prefix}revision=${s.revision} etcd_${prefix}db_mib=${s.dbSizeMiB.toFixed(1)} etcd_${prefix}db_in_use_mib=${s.dbInUseMiB.toFixed(1)}`;
}
