// The Debian 12 guest image as tests see it: built on first use by
// hack/guest/debian/build.sh (mmdebstrap; minutes on a fresh cache, well under a second
// when cached), with the manifest's facts, and the cloud-init documents that give it a
// host name, a user with an SSH key and a network. See docs/adr/0088-debian-guest-image.md.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';

const run = promisify(execFile);
const buildScript = path.resolve(import.meta.dirname, '..', '..', 'hack', 'guest', 'debian', 'build.sh');

export class DebianImageError extends Error {
  override readonly name = 'DebianImageError';
}

const manifestSchema = z.object({
  hash: z.string().regex(/^[0-9a-f]{16}$/),
  image: z.string().min(1),
  format: z.literal('qcow2'),
  virtualBytes: z.number().int().positive(),
  kernelRelease: z.string().min(1),
  defaultUser: z.string().min(1),
  packages: z.record(z.string(), z.string()),
});

export interface DebianGuest {
  readonly dir: string;
  readonly hash: string;
  /** The qcow2 image (compressed), for a domain's templates or an overlay's backing file. */
  readonly image: string;
  readonly virtualBytes: number;
  readonly kernelRelease: string;
  readonly packages: Readonly<Record<string, string>>;
}

let cached: Promise<DebianGuest> | undefined;

async function build(): Promise<DebianGuest> {
  let stdout: string;
  try {
    ({ stdout } = await run('bash', [buildScript], { maxBuffer: 16 * 1024 * 1024, timeout: 45 * 60_000 }));
  } catch (err) {
    const stderr = (err as { stderr?: unknown }).stderr;
    throw new DebianImageError(`hack/guest/debian/build.sh failed: ${typeof stderr === 'string' ? stderr.trim().slice(-4000) : String(err)}`, { cause: err });
  }
  const dir = stdout.trim().split('\n').at(-1) ?? '';
  const parsed = manifestSchema.safeParse(JSON.parse(await readFile(path.join(dir, 'manifest.json'), 'utf8')));
  if (!parsed.success) throw new DebianImageError(`bad manifest in ${dir}: ${parsed.error.message}`);
  const m = parsed.data;
  return { dir, hash: m.hash, image: path.join(dir, m.image), virtualBytes: m.virtualBytes, kernelRelease: m.kernelRelease, packages: m.packages };
}

/** The Debian guest image, built first when the cache has none for today's package versions. */
export function debianGuest(): Promise<DebianGuest> {
  cached ??= build().catch((err: unknown) => {
    cached = undefined;
    throw err;
  });
  return cached;
}

export interface CloudConfigOptions {
  readonly hostname: string;
  readonly user: string;
  readonly sshAuthorizedKeys: readonly string[];
}

/** A #cloud-config: the host name, one user with sudo and the given SSH keys, password logins off. */
export function cloudConfig(o: CloudConfigOptions): string {
  // JSON is YAML: every value quoted the same way, whatever it holds.
  const doc = {
    hostname: o.hostname,
    fqdn: o.hostname,
    preserve_hostname: false,
    ssh_pwauth: false,
    users: [{ name: o.user, shell: '/bin/bash', sudo: 'ALL=(ALL) NOPASSWD:ALL', lock_passwd: true, ssh_authorized_keys: o.sshAuthorizedKeys }],
  };
  return `#cloud-config\n${JSON.stringify(doc, null, 2)}\n`;
}

/** Network config version 2: DHCP (IPv4) on every Ethernet interface whose name starts with `e`. */
export function dhcpNetworkConfig(): string {
  return `${JSON.stringify({ version: 2, ethernets: { all: { match: { name: 'e*' }, dhcp4: true } } }, null, 2)}\n`;
}
