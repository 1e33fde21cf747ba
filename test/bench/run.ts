// `npm run bench -- <name> [args…]`: runs the benchmark test/bench/<name>.ts. A
// benchmark module either does its work at import or exports `main(args)`.
// First it builds what the suites need, as `npm test` does (hack/prepare.sh: every
// hack/prepare.d/*.sh, each cached); a benchmark builds anything further itself (kwok: test/support/kwok.ts).
import { execFileSync } from 'node:child_process';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const benchDir = import.meta.dirname;

async function available(): Promise<string[]> {
  const files = await readdir(benchDir);
  return files.filter((f) => f.endsWith('.ts') && f !== 'run.ts' && !f.endsWith('.test.ts')).map((f) => f.slice(0, -3)).sort();
}

async function runBench(argv: readonly string[]): Promise<number> {
  const [name, ...args] = argv;
  const names = await available();
  if (name === undefined || !/^[a-z0-9][a-z0-9-]*$/.test(name) || !names.includes(name)) {
    process.stderr.write(`usage: npm run bench -- <name> [args…]\navailable: ${names.join(', ') || '(none)'}\n`);
    return 2;
  }
  execFileSync('bash', [path.join(benchDir, '..', '..', 'hack', 'prepare.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  const mod = (await import(pathToFileURL(path.join(benchDir, `${name}.ts`)).href)) as { main?: (args: readonly string[]) => Promise<unknown> };
  if (typeof mod.main === 'function') await mod.main(args);
  return 0;
}

process.exitCode = await runBench(process.argv.slice(2));
