// `npm run bench -- images`: builds (or finds, by content hash) the container images with
// hack/images/build.sh and reports their sizes as podman stores them (uncompressed, in
// MiB), with what each is made of: the Debian base, the pinned Node.js binary and the
// application tree. Also times a warm build (every image cached), what a `npm test`
// run pays before the suites. Ends with
// `BENCH images launcher_mib=… operator_mib=… node_agent_mib=…`.
import { statSync } from 'node:fs';
import path from 'node:path';
import { builtImage, imageSizeBytes } from '../images/podman-service.ts';
import { execFileSync } from 'node:child_process';

const MIB = 1024 * 1024;
const repoRoot = path.resolve(import.meta.dirname, '..', '..');

function mib(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}

export async function main(): Promise<void> {
  const refs = {
    pause: await builtImage('pause'),
    operator: await builtImage('operator'),
    launcher: await builtImage('launcher'),
    nodeAgent: await builtImage('node-agent'),
  };
  const started = performance.now();
  execFileSync('bash', [path.join(repoRoot, 'hack/images/build.sh')], { stdio: ['ignore', 'ignore', 'inherit'] });
  const warmMs = performance.now() - started;
  const base = execFileSync('bash', [path.join(repoRoot, 'hack/images/build.sh'), 'debian'], { encoding: 'utf8' }).trim().split(' ')[1] ?? '';
  const sizes = {
    pause: await imageSizeBytes(refs.pause),
    base: await imageSizeBytes(base),
    operator: await imageSizeBytes(refs.operator),
    launcher: await imageSizeBytes(refs.launcher),
    nodeAgent: await imageSizeBytes(refs.nodeAgent),
  };
  const nodeBinary = statSync(path.join(repoRoot, 'node_modules/.bin/node')).size;
  for (const [name, ref] of Object.entries(refs)) process.stdout.write(`images: ${name} ${ref}\n`);
  process.stdout.write(
    `images: base (Debian 12 minbase) ${mib(sizes.base)} MiB, Node.js binary ${mib(nodeBinary)} MiB, pause ${(sizes.pause / 1024).toFixed(0)} KiB; ` +
      `operator tree ${mib(sizes.operator - sizes.base - nodeBinary)} MiB, launcher packages and tree ${mib(sizes.launcher - sizes.base - nodeBinary)} MiB; ` +
      `warm build of all images ${(warmMs / 1000).toFixed(1)} s\n`,
  );
  process.stdout.write(`BENCH images launcher_mib=${mib(sizes.launcher)} operator_mib=${mib(sizes.operator)} node_agent_mib=${mib(sizes.nodeAgent)}\n`);
}
