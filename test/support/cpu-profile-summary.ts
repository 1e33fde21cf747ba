// Reads a V8 CPU profile (`node --cpu-prof`, a .cpuprofile file) and prints where the
// time went: the functions with the most self time, and the most inclusive time (a
// function counted once per sample however deep it recurses).
//   node test/support/cpu-profile-summary.ts <file.cpuprofile> [--top N] [--match <text>]
// `--match` keeps the functions whose name or file contains the text.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';

const profileSchema = z.object({
  nodes: z.array(
    z.object({
      id: z.number(),
      callFrame: z.object({ functionName: z.string(), url: z.string(), lineNumber: z.number() }),
      children: z.array(z.number()).optional(),
    }),
  ),
  samples: z.array(z.number()),
  timeDeltas: z.array(z.number()),
});
export type CpuProfile = z.infer<typeof profileSchema>;

export interface FunctionTime {
  /** `name file:line` */
  readonly fn: string;
  readonly selfMs: number;
  readonly totalMs: number;
}

function label(frame: CpuProfile['nodes'][number]['callFrame'], repoRoot: string): string {
  const file = frame.url.startsWith('file://') ? path.relative(repoRoot, new URL(frame.url).pathname) : frame.url;
  return `${frame.functionName || '(anonymous)'} ${file}:${frame.lineNumber + 1}`;
}

/** Self and inclusive time per function, most inclusive first; and the profile's length. */
export function summarize(profile: CpuProfile, repoRoot: string): { functions: FunctionTime[]; totalMs: number } {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const stackKeys = new Map<number, readonly string[]>();
  const keysOf = (id: number): readonly string[] => {
    const known = stackKeys.get(id);
    if (known !== undefined) return known;
    const node = byId.get(id);
    const up = parent.get(id);
    const own = node === undefined ? '(unknown)' : label(node.callFrame, repoRoot);
    const above = up === undefined ? [] : keysOf(up);
    const keys = above.includes(own) ? above : [...above, own];
    stackKeys.set(id, keys);
    return keys;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let totalMs = 0;
  profile.samples.forEach((id, i) => {
    const ms = (profile.timeDeltas[i] ?? 0) / 1000;
    totalMs += ms;
    const node = byId.get(id);
    const own = node === undefined ? '(unknown)' : label(node.callFrame, repoRoot);
    self.set(own, (self.get(own) ?? 0) + ms);
    for (const k of keysOf(id)) total.set(k, (total.get(k) ?? 0) + ms);
  });
  const functions = [...total].map(([fn, t]) => ({ fn, selfMs: self.get(fn) ?? 0, totalMs: t })).sort((a, b) => b.totalMs - a.totalMs);
  return { functions, totalMs };
}

async function main(args: readonly string[]): Promise<void> {
  const file = args[0];
  if (file === undefined) throw new Error('usage: cpu-profile-summary.ts <file.cpuprofile> [--top N] [--match <text>]');
  const topAt = args.indexOf('--top');
  const top = topAt >= 0 ? Number(args[topAt + 1]) : 40;
  const matchAt = args.indexOf('--match');
  const match = matchAt >= 0 ? args[matchAt + 1] : undefined;
  const profile = profileSchema.parse(JSON.parse(await readFile(file, 'utf8')));
  const { functions, totalMs } = summarize(profile, path.resolve(import.meta.dirname, '..', '..'));
  const shown = match === undefined ? functions : functions.filter((f) => f.fn.includes(match));
  const row = (f: FunctionTime): string => `${f.selfMs.toFixed(0).padStart(9)} ${((f.selfMs / totalMs) * 100).toFixed(1).padStart(5)}% ${f.totalMs.toFixed(0).padStart(9)} ${((f.totalMs / totalMs) * 100).toFixed(1).padStart(5)}%  ${f.fn}`;
  const idleMs = functions.find((f) => f.fn.startsWith('(idle) '))?.selfMs ?? 0;
  const header = `  self ms  self%  total ms total%  function (profile: ${totalMs.toFixed(0)} ms, ${(totalMs - idleMs).toFixed(0)} ms busy)`;
  process.stdout.write(`by self time:\n${header}\n${[...shown].sort((a, b) => b.selfMs - a.selfMs).slice(0, top).map(row).join('\n')}\n\n`);
  process.stdout.write(`by total time:\n${header}\n${shown.slice(0, top).map(row).join('\n')}\n`);
}

if (import.meta.url === `file://${process.argv[1] ?? ''}`) await main(process.argv.slice(2));
