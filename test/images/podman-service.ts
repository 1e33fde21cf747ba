// What the image suites share: the images built by hack/images/build.sh (cached by
// content hash, so a warm call costs a second or two) and a private podman API service
// (`podman system service` on a socket in a temp dir) that testcontainers drives as its
// Docker endpoint. Containers run on the host's network (loopback only: no bridge,
// no port mapping) and are never pulled: every image is a local build.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import type { ImagePullPolicy } from 'testcontainers';

const run = promisify(execFile);
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

export class ImageSuiteError extends Error {
  override readonly name = 'ImageSuiteError';
}

export type ImageName = 'pause' | 'node-runtime' | 'operator' | 'launcher' | 'node-agent';

/** Builds (or finds) an image; returns its content-hash reference. */
export async function builtImage(name: ImageName): Promise<string> {
  const { stdout } = await run('bash', [path.join(repoRoot, 'hack/images/build.sh'), name], { maxBuffer: 1 << 20 });
  const line = stdout.split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new ImageSuiteError(`hack/images/build.sh ${name} printed no reference:\n${stdout}`);
  return line.slice(name.length + 1).trim();
}

/** The size of a local image in bytes, as podman reports it. */
export async function imageSizeBytes(ref: string): Promise<number> {
  const { stdout } = await run('podman', ['image', 'inspect', '--format', '{{.Size}}', ref]);
  const size = Number(stdout.trim());
  if (!Number.isInteger(size) || size <= 0) throw new ImageSuiteError(`podman reports no size for ${ref}: ${stdout}`);
  return size;
}

/** Local images only: testcontainers never pulls. */
export const NEVER_PULL: ImagePullPolicy = { shouldPull: () => false };

export interface PodmanService {
  readonly socket: string;
  readonly stop: () => Promise<void>;
}

/**
 * Starts `podman system service` on a private socket and points testcontainers at it
 * (DOCKER_HOST; its reaper container disabled: every suite stops what it starts).
 */
export async function startPodmanService(): Promise<PodmanService> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-podman-'));
  const socket = path.join(dir, 'podman.sock');
  const child: ChildProcess = spawn('podman', ['system', 'service', '--time=0', `unix://${socket}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = once(child, 'exit');
  const deadline = Date.now() + 30_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null) throw new ImageSuiteError(`podman system service exited with ${child.exitCode}:\n${stderr}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new ImageSuiteError(`podman system service did not create ${socket} within 30 s:\n${stderr}`);
    }
    await sleep(50);
  }
  process.env.DOCKER_HOST = `unix://${socket}`;
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  return {
    socket,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        await exited;
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** The lines a container wrote so far, and a wait for one that matches. */
export interface ContainerOutput {
  readonly text: () => string;
  readonly consume: (stream: NodeJS.ReadableStream) => void;
  readonly waitFor: (pattern: RegExp, timeoutMs: number) => Promise<RegExpExecArray>;
  /** A field of the first pino JSON line with message `msg`, if any. */
  readonly logField: (msg: string, field: string) => unknown;
}

export function containerOutput(): ContainerOutput {
  let text = '';
  return {
    text: () => text,
    consume: (stream) => {
      stream.on('data', (chunk: Buffer | string) => (text += chunk.toString()));
    },
    logField: (msg, field) => {
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const parsed: unknown = JSON.parse(line);
          if (typeof parsed === 'object' && parsed !== null && (parsed as Record<string, unknown>).msg === msg) return (parsed as Record<string, unknown>)[field];
        } catch {
          // not a log line
        }
      }
      return undefined;
    },
    waitFor: async (pattern, timeoutMs) => {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const match = pattern.exec(text);
        if (match !== null) return match;
        if (Date.now() > deadline) throw new ImageSuiteError(`the container never wrote ${String(pattern)} within ${timeoutMs} ms:\n${text}`);
        await sleep(100);
      }
    },
  };
}
