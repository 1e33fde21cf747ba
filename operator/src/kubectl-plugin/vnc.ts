// `kubectl keyvirt vnc`: a local port for a VNC viewer, each connection carried to the
// guest display over the virtualmachines/vnc websocket (ADR 0066; the server speaks RFB
// first). Starts a viewer found on PATH unless --proxy-only; then prints {"port":N}
// (as virtctl does) and proxies until interrupted.
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { PluginError, ForbiddenError, NotFoundError } from './errors.ts';
import type { KeyVirtApi, VmRef } from './keyvirt-api.ts';
import { serveProxy } from './local-proxy.ts';

export interface VncOptions {
  readonly proxyOnly: boolean;
  readonly port: number;
  readonly address: string;
}

/** Viewers tried in order, with the argument each takes for host and port. */
export const VIEWERS: readonly { name: string; target: (address: string, port: number) => string }[] = [
  { name: 'remote-viewer', target: (a, p) => `vnc://${a}:${String(p)}` },
  { name: 'vncviewer', target: (a, p) => `${a}::${String(p)}` },
  { name: 'xtigervncviewer', target: (a, p) => `${a}::${String(p)}` },
];

/** The first viewer on PATH (pure but for the file check injected). */
export function findViewer(pathVar: string, executable: (file: string) => boolean): { file: string; target: (a: string, p: number) => string } | undefined {
  for (const viewer of VIEWERS) {
    for (const dir of pathVar.split(path.delimiter).filter((d) => d !== '')) {
      const file = path.join(dir, viewer.name);
      if (executable(file)) return { file, target: viewer.target };
    }
  }
  return undefined;
}

function isExecutable(file: string): boolean {
  try {
    accessSync(file, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

export async function runVnc(api: KeyVirtApi, ref: VmRef, options: VncOptions, io: { stdout: Writable; stderr: Writable }): Promise<void> {
  const viewer = options.proxyOnly ? undefined : findViewer(process.env.PATH ?? '', isExecutable);
  if (!options.proxyOnly && viewer === undefined) {
    throw new PluginError(`no VNC viewer found on PATH (${VIEWERS.map((v) => v.name).join(', ')}): install one, or use --proxy-only and point your own viewer at the port`, 1);
  }
  if (!(await api.mayUseSubresource(ref, 'get', 'vnc'))) {
    throw new ForbiddenError(
      `forbidden: you may not get virtualmachines/vnc (API group subresources.keyvirt.io) in namespace "${ref.namespace}"; ask for an RBAC role that grants it`,
    );
  }
  let fatal: (err: unknown) => void = () => undefined;
  const failed = new Promise<never>((_, reject) => (fatal = reject));
  const proxy = await serveProxy({
    address: options.address,
    port: options.port,
    dial: () => api.openStream(ref, 'vnc'),
    onError: (err) => {
      // Permission and existence do not change by retrying: stop. Anything else (in use, a broken stream): report and keep serving.
      if (err instanceof ForbiddenError || err instanceof NotFoundError) fatal(err);
      else io.stderr.write(`vnc: ${err instanceof Error ? err.message : String(err)}\n`);
    },
  });
  try {
    if (viewer === undefined) {
      io.stdout.write(`${JSON.stringify({ port: proxy.port })}\n`);
      io.stderr.write(`Serving the screen of VirtualMachine "${ref.name}" in namespace "${ref.namespace}" on ${proxy.address}:${String(proxy.port)}; Ctrl+C to stop.\n`);
      await Promise.race([failed, untilSignal()]);
      return;
    }
    const child = spawn(viewer.file, [viewer.target(proxy.address, proxy.port)], { stdio: 'inherit' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    await Promise.race([failed, exited, untilSignal()]);
    child.kill('SIGTERM');
  } finally {
    await proxy.close();
  }
}

/** Resolves at SIGINT, SIGTERM or SIGHUP. */
export function untilSignal(): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      process.off('SIGINT', done);
      process.off('SIGTERM', done);
      process.off('SIGHUP', done);
      resolve();
    };
    process.once('SIGINT', done);
    process.once('SIGTERM', done);
    process.once('SIGHUP', done);
  });
}
