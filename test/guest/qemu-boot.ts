// Boots the test guest from its disk under a plain qemu-system-x86_64 (no launcher) for
// the guest's own tests: QMP and the agent channel on unix sockets in a temp dir, the serial
// console into a file there. Every boot owns its dir and process; dispose() kills the
// process (by its pid) and removes the dir.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { access, constants, mkdtemp, readFile, rm } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GUEST_AGENT_CHANNEL, testGuest, type DiskFormat } from '../support/guest.ts';

export type Accelerator = 'kvm' | 'tcg';

/**
 * KVM only when the CPU advertises hardware virtualisation and /dev/kvm opens; a
 * software KVM without vmx/svm cannot boot a stock kernel, so that means TCG.
 */
export async function chooseAccelerator(): Promise<Accelerator> {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return 'tcg';
  }
  if (!/^flags\s*:.*\b(vmx|svm)\b/m.test(cpuinfo)) return 'tcg';
  return access('/dev/kvm', constants.R_OK | constants.W_OK).then(
    () => 'kvm' as const,
    () => 'tcg' as const,
  );
}

export interface GuestDisk {
  readonly path: string;
  readonly format: DiskFormat;
  readonly bus: 'virtio-blk' | 'virtio-scsi';
}

export interface BootOptions {
  readonly machine?: 'q35' | 'pc';
  readonly memoryMiB?: number;
  readonly disks?: readonly GuestDisk[];
  /** A NoCloud seed ISO. */
  readonly seedIso?: string;
  /** How the seed is attached: a CD-ROM (IDE on pc, AHCI on q35; default) or a read-only virtio disk. */
  readonly seedBus?: 'cdrom' | 'virtio-blk';
  readonly guestAgent?: boolean;
  readonly network?: boolean;
  /** Start as a migration target (`-incoming defer`), paused until migrate-incoming. */
  readonly incoming?: boolean;
}

export interface BootedGuest {
  readonly dir: string;
  readonly process: ChildProcess;
  readonly qmpSocket: string;
  readonly agentSocket: string;
  readonly accelerator: Accelerator;
  /** Date.now() just before QEMU was spawned. */
  readonly startedAt: number;
  readSerial(): Promise<string>;
  /** Polls the serial log until the pattern matches; returns the match. */
  waitForSerial(pattern: RegExp, timeoutMs: number): Promise<RegExpExecArray>;
  waitForExit(timeoutMs: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr(): string;
  /** Types text on the serial console (the first Enter there starts a root shell). */
  typeOnConsole(text: string): Promise<void>;
  dispose(): Promise<void>;
}

function diskArgs(disks: readonly GuestDisk[]): string[] {
  const args: string[] = [];
  if (disks.some((d) => d.bus === 'virtio-scsi')) args.push('-device', 'virtio-scsi-pci,id=scsi0');
  disks.forEach((disk, i) => {
    args.push('-drive', `file=${disk.path},format=${disk.format},if=none,id=disk${i},cache=writeback,aio=threads`);
    args.push('-device', disk.bus === 'virtio-blk' ? `virtio-blk-pci,drive=disk${i}` : `scsi-hd,drive=disk${i},bus=scsi0.0`);
  });
  return args;
}

async function qemuArgs(dir: string, accelerator: Accelerator, options: BootOptions): Promise<string[]> {
  const guest = await testGuest();
  const args = [
    '-name', `kv-guest-test,process=kv-guest-test-${path.basename(dir)}`,
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-machine', `${options.machine ?? 'q35'},accel=${accelerator}`,
    '-cpu', accelerator === 'kvm' ? 'host' : 'qemu64',
    '-m', String(options.memoryMiB ?? 256), '-smp', '1',
    // The guest boots from its disk through the firmware (SeaBIOS, syslinux), read-only, as every VM does (ADR 0087).
    '-drive', `file=${guest.disk},format=qcow2,if=none,id=boot0,readonly=on`, '-device', 'virtio-blk-pci,drive=boot0,bootindex=1',
    '-boot', 'strict=on',
    '-chardev', `socket,id=serial0,path=${path.join(dir, 'serial.sock')},server=on,wait=off,logfile=${path.join(dir, 'serial.log')}`,
    '-serial', 'chardev:serial0',
    '-chardev', `socket,id=qmp0,path=${path.join(dir, 'qmp.sock')},server=on,wait=off`, '-mon', 'chardev=qmp0,mode=control',
  ];
  if (options.guestAgent ?? true) {
    args.push(
      '-device', 'virtio-serial-pci,id=vser0',
      '-chardev', `socket,id=qga0,path=${path.join(dir, 'qga.sock')},server=on,wait=off`,
      '-device', `virtserialport,bus=vser0.0,chardev=qga0,name=${GUEST_AGENT_CHANNEL}`,
    );
  }
  args.push(...diskArgs(options.disks ?? []));
  if (options.seedIso !== undefined) {
    const cdrom = (options.seedBus ?? 'cdrom') === 'cdrom';
    args.push(
      '-drive', `file=${options.seedIso},format=raw,if=none,id=seed0,readonly=on${cdrom ? ',media=cdrom' : ''}`,
      '-device', cdrom ? 'ide-cd,drive=seed0' : 'virtio-blk-pci,drive=seed0',
    );
  }
  if (options.network ?? true) args.push('-netdev', 'user,id=net0', '-device', 'virtio-net-pci,netdev=net0,romfile=');
  if (options.incoming === true) args.push('-incoming', 'defer');
  return args;
}

async function waitForFile(file: string, proc: ChildProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`QEMU exited (${proc.exitCode ?? proc.signalCode}) early`);
    if (await access(file).then(() => true, () => false)) return;
    await sleep(25);
  }
  throw new Error(`${file} did not appear within ${timeoutMs} ms`);
}

/** Starts QEMU with the test guest; resolves once its QMP socket exists. */
export async function bootGuest(options: BootOptions = {}): Promise<BootedGuest> {
  await testGuest(); // build (if needed) before the clock starts
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-guest-test-'));
  const accelerator = await chooseAccelerator();
  const args = await qemuArgs(dir, accelerator, options);
  const startedAt = Date.now();
  const proc = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = once(proc, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const serialPath = path.join(dir, 'serial.log');
  const readSerial = (): Promise<string> => readFile(serialPath, 'utf8').catch(() => '');
  let consoleSocket: Socket | undefined;
  const typeOnConsole = async (text: string): Promise<void> => {
    if (consoleSocket === undefined) {
      const socket = createConnection(path.join(dir, 'serial.sock'));
      socket.on('data', () => undefined); // keep draining: a full socket would stall the guest's UART
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      consoleSocket = socket;
    }
    const socket = consoleSocket;
    await new Promise<void>((resolve, reject) => socket.write(text, (err) => (err ? reject(err) : resolve())));
  };
  const dispose = async (): Promise<void> => {
    consoleSocket?.destroy();
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGKILL');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  const booted: BootedGuest = {
    dir,
    process: proc,
    qmpSocket: path.join(dir, 'qmp.sock'),
    agentSocket: path.join(dir, 'qga.sock'),
    accelerator,
    startedAt,
    readSerial,
    stderr: () => stderr,
    typeOnConsole,
    dispose,
    async waitForSerial(pattern, timeoutMs) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = pattern.exec(await readSerial());
        if (m !== null) return m;
        if (Date.now() >= deadline) throw new Error(`serial console never matched ${String(pattern)} within ${timeoutMs} ms`);
        if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`QEMU exited before serial matched ${String(pattern)}`);
        await sleep(100);
      }
    },
    async waitForExit(timeoutMs) {
      const abort = new AbortController();
      const timeout = sleep(timeoutMs, undefined, { signal: abort.signal }).then(() => {
        throw new Error(`QEMU still running after ${timeoutMs} ms`);
      });
      try {
        const [code, signal] = await Promise.race([exited, timeout]);
        return { code, signal };
      } finally {
        abort.abort();
      }
    },
  };
  try {
    await waitForFile(booted.qmpSocket, proc, 60_000);
  } catch (err) {
    await dispose();
    throw new Error(`QEMU did not start: ${(err as Error).message}; stderr: ${stderr}`, { cause: err });
  }
  return booted;
}
