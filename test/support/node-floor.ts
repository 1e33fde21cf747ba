// The Node.js floor under a launcher, for memory benchmarks: the same node binary under
// the same flags, (a) alone, idle, and (b) with every builtin a running launcher has
// loaded required again and an HTTP server listening — what any launcher written for
// Node.js holds before one line of its own code runs. Measured beside the launcher in
// the same run, so that its resident set reads against what it cannot go below.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { processMemory, type ProcessMemory } from './process-memory.ts';

/**
 * Preloaded into a launcher (`--require`, CommonJS): once its SIGUSR2 handler is in place
 * it creates `<file>.ready`; on SIGUSR2 it writes the builtins the process has loaded,
 * one per line, to the file KEYVIRT_FLOOR_BUILTINS_FILE names.
 */
export const BUILTINS_RECORDER = `'use strict';
const { writeFileSync } = require('node:fs');
process.on('SIGUSR2', () => {
  const loaded = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice('NativeModule '.length));
  writeFileSync(process.env.KEYVIRT_FLOOR_BUILTINS_FILE, loaded.join('\\n') + '\\n');
});
writeFileSync(process.env.KEYVIRT_FLOOR_BUILTINS_FILE + '.ready', '');
`;

/** A launcher run with the recorder: its command's extra arguments, environment, and the list once asked for. */
export interface BuiltinsRecording {
  readonly nodeArgs: readonly string[];
  readonly env: Record<string, string>;
  /** Signals the process and reads what it wrote. */
  readonly read: (pid: number) => Promise<string[]>;
  readonly dispose: () => Promise<void>;
}

export async function builtinsRecording(): Promise<BuiltinsRecording> {
  const dir = await mkdtemp(path.join(tmpdir(), 'kv-node-floor-'));
  const recorder = path.join(dir, 'recorder.cjs');
  const file = path.join(dir, 'builtins');
  await writeFile(recorder, BUILTINS_RECORDER);
  return {
    nodeArgs: ['--require', recorder],
    env: { KEYVIRT_FLOOR_BUILTINS_FILE: file },
    read: async (pid) => {
      // SIGUSR2 before the handler is in place would end the process.
      for (let i = 0; !existsSync(`${file}.ready`); i++) {
        if (i >= 600) throw new Error('the recorder was not loaded within 60 s');
        await sleep(100);
      }
      process.kill(pid, 'SIGUSR2');
      for (let i = 0; i < 100; i++) {
        try {
          const list = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '');
          if (list.length > 0) return list;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        }
        await sleep(50);
      }
      throw new Error('the launcher wrote no builtins list within 5 s of SIGUSR2');
    },
    dispose: () => rm(dir, { recursive: true, force: true }),
  };
}

/** The public builtins of a loaded list (internal modules come with them). */
export function publicBuiltins(loaded: readonly string[]): string[] {
  const known = new Set(builtinModules);
  return [...new Set(loaded.filter((m) => known.has(m) && !m.startsWith('internal/')))].sort();
}

/** The script a floor process runs: require the builtins, listen, say ready. */
export function floorScript(builtins: readonly string[], listen: boolean): string {
  const requires = builtins.map((m) => `require(${JSON.stringify(`node:${m}`)});`).join('');
  const ready = `process.stdout.write('ready\\n');setInterval(() => {}, 1 << 30);`;
  return listen ? `${requires}require('node:http').createServer().listen(0, '127.0.0.1', () => {${ready}});` : `${requires}${ready}`;
}

async function floorProcess(node: string, flags: readonly string[], script: string, settleMs: number): Promise<ProcessMemory> {
  const child: ChildProcess = spawn(node, [...flags, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const ready = new Promise<void>((resolve, reject) => {
      let out = '';
      child.stdout?.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.includes('ready\n')) resolve();
      });
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`floor process exited (${code ?? 'signal'}) before it was ready`)));
    });
    await ready;
    await sleep(settleMs);
    return await processMemory(child.pid ?? -1);
  } finally {
    // A child that never started (spawn's 'error') has no pid and emits no 'exit'.
    if (child.pid !== undefined) {
      child.kill('SIGKILL');
      if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
    }
  }
}

export interface NodeFloor {
  /** The binary alone under the flags. */
  readonly bare: ProcessMemory;
  /** The binary with the launcher's builtins and a listening HTTP server. */
  readonly builtins: ProcessMemory;
  readonly builtinCount: number;
}

/** Both floors, each the median-RSS of `runs` processes run one after another. */
export async function nodeFloor(node: string, flags: readonly string[], loaded: readonly string[], runs = 3, settleMs = 2000): Promise<NodeFloor> {
  const builtins = publicBuiltins(loaded);
  const pick = async (script: string): Promise<ProcessMemory> => {
    const samples: ProcessMemory[] = [];
    for (let i = 0; i < runs; i++) samples.push(await floorProcess(node, flags, script, settleMs));
    samples.sort((a, b) => a.rssMiB - b.rssMiB);
    const mid = samples[Math.floor(samples.length / 2)];
    if (mid === undefined) throw new Error('runs must be at least 1');
    return mid;
  };
  return { bare: await pick(floorScript([], false)), builtins: await pick(floorScript(builtins, true)), builtinCount: builtins.length };
}
