// `kubectl keyvirt ssh` and `scp`: a port-forward to the guest's ssh port on a free
// loopback port, then the local ssh or scp against it. Host keys are remembered under
// the alias vm/NAME.NAMESPACE, not 127.0.0.1 and a random port.
import { spawn } from 'node:child_process';
import type { KubeConfig } from '@kubernetes/client-node';
import { PluginError, UsageError } from './errors.ts';
import type { KeyVirtApi, VmRef } from './keyvirt-api.ts';
import { forwardPorts } from './port-forward.ts';

const VM_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

export interface GuestTarget {
  readonly user: string | undefined;
  readonly vm: string;
}

/** `[USER@]VM` */
export function parseSshTarget(text: string, verb: string): GuestTarget {
  const at = text.lastIndexOf('@');
  const user = at < 0 ? undefined : text.slice(0, at);
  const vm = at < 0 ? text : text.slice(at + 1);
  if (user === '') throw new UsageError(`${verb}: ${JSON.stringify(text)} has an empty user before @`, verb);
  if (!VM_NAME.test(vm)) throw new UsageError(`${verb}: ${JSON.stringify(vm)} is not a VirtualMachine name`, verb);
  return { user, vm };
}

export interface ScpOperands {
  readonly target: GuestTarget;
  /** Which operand is remote, and its path. */
  readonly remoteIs: 'source' | 'destination';
  readonly remotePath: string;
  readonly localPath: string;
}

function remoteOperand(text: string): { target: GuestTarget; path: string } | undefined {
  if (text.startsWith('/') || text.startsWith('.') || text.startsWith('~')) return undefined;
  const m = /^(?:([^@:/]+)@)?([a-z0-9]([-a-z0-9]*[a-z0-9])?):(.*)$/.exec(text);
  if (m === null) return undefined;
  return { target: { user: m[1], vm: m[2] ?? '' }, path: m[4] ?? '' };
}

/** Exactly one of SOURCE and DESTINATION is `[USER@]VM:PATH`. */
export function parseScpOperands(source: string, destination: string): ScpOperands {
  const src = remoteOperand(source);
  const dst = remoteOperand(destination);
  if (src !== undefined && dst !== undefined) throw new UsageError('scp: copy between the guest and a local path: only one side may be VM:PATH', 'scp');
  if (src !== undefined) return { target: src.target, remoteIs: 'source', remotePath: src.path, localPath: destination };
  if (dst !== undefined) return { target: dst.target, remoteIs: 'destination', remotePath: dst.path, localPath: source };
  throw new UsageError('scp: one of SOURCE and DESTINATION must be [USER@]VM:PATH', 'scp');
}

export interface SshOptions {
  readonly user: string | undefined;
  readonly guestPort: number;
  readonly identityFile: string | undefined;
  readonly recursive?: boolean;
  readonly passThrough: readonly string[];
  readonly timeoutMs: number;
}

function commonOptions(ref: VmRef, o: SshOptions): string[] {
  return ['-o', `HostKeyAlias=vm/${ref.name}.${ref.namespace}`, ...(o.identityFile !== undefined ? ['-i', o.identityFile] : [])];
}

/** The ssh command line against the forwarded port (pure). Options after the host are still options to OpenSSH. */
export function sshArgs(ref: VmRef, port: number, o: SshOptions): string[] {
  return ['-p', String(port), ...commonOptions(ref, o), ...(o.user !== undefined ? ['-l', o.user] : []), '127.0.0.1', ...o.passThrough];
}

export function scpArgs(ref: VmRef, port: number, o: SshOptions, operands: ScpOperands): string[] {
  const user = o.user ?? operands.target.user;
  const remote = `${user !== undefined ? `${user}@` : ''}127.0.0.1:${operands.remotePath}`;
  const [first, second] = operands.remoteIs === 'source' ? [remote, operands.localPath] : [operands.localPath, remote];
  return ['-P', String(port), ...commonOptions(ref, o), ...(o.recursive === true ? ['-r'] : []), ...o.passThrough, first, second];
}

/** Runs ssh or scp through a port-forward; resolves with its exit code. */
export interface ForwardedProgram {
  readonly program: 'ssh' | 'scp';
  readonly args: (port: number) => string[];
  readonly options: SshOptions;
  readonly stderr: (line: string) => void;
}

export async function runThroughForward(api: KeyVirtApi, kc: KubeConfig, ref: VmRef, run: ForwardedProgram): Promise<number> {
  const { program, args, options: o, stderr } = run;
  const forwarder = await forwardPorts(api, kc, ref, [{ local: 0, guest: o.guestPort }], {
    address: '127.0.0.1',
    timeoutMs: o.timeoutMs,
    onError: (err) => stderr(`${program}: ${err instanceof Error ? err.message : String(err)}`),
  });
  const port = forwarder.proxies[0]?.proxy.port ?? 0;
  try {
    return await new Promise<number>((resolve, reject) => {
      const child = spawn(program, args(port), { stdio: 'inherit' });
      child.once('error', (err) => reject(new PluginError(`cannot run ${program}: ${err.message} (is it installed?)`, 1, { cause: err })));
      child.once('exit', (code, signal) => resolve(code ?? (signal !== null ? 128 : 1)));
    });
  } finally {
    await forwarder.close();
  }
}
