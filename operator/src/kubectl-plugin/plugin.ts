// Dispatches one command line: parse, load the kubeconfig, run the verb, and turn every
// failure into `error: <message>` and an exit code (errors.ts). Returns the exit code.
import type { Readable, Writable } from 'node:stream';
import { KubeClient } from '../runtime/kube-client.ts';
import packageJson from '../../package.json' with { type: 'json' };
import { runAction, runGuestInfo, runMigrate, runMigrateCancel } from './action-verbs.ts';
import { booleanFlag, numberFlag, parseCommandLine, stringFlag, type ParsedCommand } from './command-line.ts';
import { runConsole } from './console.ts';
import { EXIT, PluginError, UsageError } from './errors.ts';
import { overviewHelp, verbHelp } from './help.ts';
import { runImageUpload } from './image-upload.ts';
import { KeyVirtApi, type VmRef } from './keyvirt-api.ts';
import { loadKubeconfig, type LoadedKubeconfig } from './kubeconfig.ts';
import { forwardPorts, parsePortMapping } from './port-forward.ts';
import { runRequest } from './run-requests.ts';
import { parseScpOperands, parseSshTarget, runThroughForward, scpArgs, sshArgs, type SshOptions } from './ssh.ts';
import { runVnc, untilSignal } from './vnc.ts';

export const PLUGIN_VERSION: string = packageJson.version;

export interface PluginIo {
  readonly stdin: Readable & { isTTY?: boolean; setRawMode?: (mode: boolean) => unknown };
  readonly stdout: Writable;
  readonly stderr: Writable;
}

type Run = Extract<ParsedCommand, { kind: 'run' }>;

interface Session {
  readonly cmd: Run;
  readonly loaded: LoadedKubeconfig;
  readonly api: KeyVirtApi;
  readonly timeoutMs: number;
  readonly io: PluginIo;
  readonly out: (line: string) => void;
}

function session(cmd: Run, io: PluginIo): Session {
  const loaded = loadKubeconfig(cmd.global);
  const timeoutMs = (cmd.global.requestTimeoutSeconds ?? 30) * 1000;
  const kube = new KubeClient(loaded.kc, 'kubectl-keyvirt', { requestTimeoutMs: timeoutMs });
  const api = new KeyVirtApi(kube, loaded.kc, timeoutMs);
  return { cmd, loaded, api, timeoutMs, io, out: (line) => io.stdout.write(`${line}\n`) };
}

function vmRef(s: Session, name: string): VmRef {
  return { namespace: s.loaded.namespace, name };
}

async function runVerb(s: Session): Promise<number> {
  const { cmd } = s;
  const first = cmd.positionals[0] ?? '';
  const timeoutSeconds = numberFlag(cmd.flags, 'timeout') ?? 300;
  switch (cmd.verb.name) {
    case 'start':
    case 'stop':
    case 'restart':
      await runRequest(s.api, vmRef(s, first), cmd.verb.name, { wait: booleanFlag(cmd.flags, 'wait'), timeoutSeconds }, s.out);
      return EXIT.ok;
    case 'pause':
    case 'unpause':
    case 'soft-reboot':
      await runAction(s.api, vmRef(s, first), cmd.verb.name, s.out);
      return EXIT.ok;
    case 'migrate':
      await runMigrate(s.api, vmRef(s, first), { targetNode: stringFlag(cmd.flags, 'to-node'), wait: booleanFlag(cmd.flags, 'wait'), timeoutSeconds }, s.out);
      return EXIT.ok;
    case 'migrate-cancel':
      await runMigrateCancel(s.api, vmRef(s, first), s.out);
      return EXIT.ok;
    case 'guestinfo':
      return guestInfo(s);
    case 'image-upload':
      return imageUpload(s);
    case 'console':
      await runConsole(s.api, vmRef(s, first), s.io);
      return EXIT.ok;
    case 'vnc':
      await runVnc(
        s.api,
        vmRef(s, first),
        { proxyOnly: booleanFlag(cmd.flags, 'proxy-only'), port: numberFlag(cmd.flags, 'port') ?? 0, address: stringFlag(cmd.flags, 'address') ?? '127.0.0.1' },
        s.io,
      );
      return EXIT.ok;
    case 'port-forward':
      return portForward(s);
    case 'ssh':
    case 'scp':
      return sshOrScp(s);
    default:
      throw new UsageError(`unknown verb "${cmd.verb.name}"`);
  }
}

async function guestInfo(s: Session): Promise<number> {
  const format = stringFlag(s.cmd.flags, 'output') ?? 'text';
  if (format !== 'text' && format !== 'json') throw new UsageError(`--output is text or json, not ${JSON.stringify(format)}`, 'guestinfo');
  await runGuestInfo(s.api, vmRef(s, s.cmd.positionals[0] ?? ''), format, (text) => s.io.stdout.write(text));
  return EXIT.ok;
}

async function imageUpload(s: Session): Promise<number> {
  const file = stringFlag(s.cmd.flags, 'file');
  if (file === undefined) throw new UsageError('--file is required: the image file to upload', 'image-upload');
  const kube = new KubeClient(s.loaded.kc, 'kubectl-keyvirt', { requestTimeoutMs: s.timeoutMs });
  await runImageUpload(kube, s.loaded.kc, vmRef(s, s.cmd.positionals[0] ?? ''), { file, timeoutSeconds: numberFlag(s.cmd.flags, 'timeout') ?? 600, limitRate: numberFlag(s.cmd.flags, 'limit-rate') }, {
    out: s.out,
    progress: (line) => s.io.stderr.write(`${line}\n`),
  });
  return EXIT.ok;
}

async function portForward(s: Session): Promise<number> {
  const [name = '', ...ports] = s.cmd.positionals;
  const mappings = ports.map(parsePortMapping);
  const forwarder = await forwardPorts(s.api, s.loaded.kc, vmRef(s, name), mappings, {
    address: stringFlag(s.cmd.flags, 'address') ?? '127.0.0.1',
    timeoutMs: s.timeoutMs,
    onError: (err) => s.io.stderr.write(`port-forward: ${err instanceof Error ? err.message : String(err)}\n`),
  });
  for (const { mapping, proxy } of forwarder.proxies) s.out(`Forwarding from ${proxy.address}:${String(proxy.port)} -> ${String(mapping.guest)}`);
  await untilSignal();
  await forwarder.close();
  return EXIT.ok;
}

async function sshOrScp(s: Session): Promise<number> {
  const { cmd } = s;
  const o: SshOptions = {
    user: stringFlag(cmd.flags, 'username'),
    guestPort: numberFlag(cmd.flags, 'port') ?? 22,
    identityFile: stringFlag(cmd.flags, 'identity-file'),
    recursive: booleanFlag(cmd.flags, 'recursive'),
    passThrough: cmd.passThrough,
    timeoutMs: s.timeoutMs,
  };
  const err = (line: string): void => {
    s.io.stderr.write(`${line}\n`);
  };
  if (cmd.verb.name === 'ssh') {
    const target = parseSshTarget(cmd.positionals[0] ?? '', 'ssh');
    const ref = vmRef(s, target.vm);
    const withUser = { ...o, user: o.user ?? target.user };
    return runThroughForward(s.api, s.loaded.kc, ref, { program: 'ssh', args: (port) => sshArgs(ref, port, withUser), options: withUser, stderr: err });
  }
  const operands = parseScpOperands(cmd.positionals[0] ?? '', cmd.positionals[1] ?? '');
  const ref = vmRef(s, operands.target.vm);
  return runThroughForward(s.api, s.loaded.kc, ref, { program: 'scp', args: (port) => scpArgs(ref, port, o, operands), options: o, stderr: err });
}

async function version(cmd: Run, io: PluginIo): Promise<number> {
  io.stdout.write(`Plugin version: ${PLUGIN_VERSION}\n`);
  if (booleanFlag(cmd.flags, 'client')) return EXIT.ok;
  const s = session(cmd, io);
  io.stdout.write(`Server version: ${await s.api.serverVersion()}\n`);
  const crds = await s.api.served('keyvirt.io/v1alpha1');
  const sub = await s.api.served('subresources.keyvirt.io/v1alpha1');
  io.stdout.write(`KeyVirt API keyvirt.io/v1alpha1: ${crds ? 'served' : 'not installed'}\n`);
  io.stdout.write(`KeyVirt subresources.keyvirt.io/v1alpha1: ${sub ? 'served' : 'not served'}\n`);
  return EXIT.ok;
}

/** Runs `kubectl keyvirt` with `argv` (the words after the program name); returns the exit code. */
export async function runPlugin(argv: readonly string[], io: PluginIo): Promise<number> {
  try {
    const cmd = parseCommandLine(argv);
    if (cmd.kind === 'help') {
      io.stdout.write(cmd.verb === undefined ? overviewHelp() : verbHelp(cmd.verb));
      return EXIT.ok;
    }
    if (cmd.verb.name === 'version') return await version(cmd, io);
    return await runVerb(session(cmd, io));
  } catch (err) {
    return report(err, io);
  }
}

function report(err: unknown, io: PluginIo): number {
  if (err instanceof UsageError) {
    const hint = err.verb !== undefined ? `kubectl keyvirt ${err.verb} --help` : 'kubectl keyvirt --help';
    io.stderr.write(`error: ${err.message}\nSee "${hint}".\n`);
    return err.exitCode;
  }
  if (err instanceof PluginError) {
    io.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  const message = err instanceof Error ? err.message : String(err);
  io.stderr.write(`error: ${message}\n`);
  return EXIT.failure;
}
