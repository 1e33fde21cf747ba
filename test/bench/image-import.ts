// An image import through KeyVirt next to a plain `qemu-img convert` of the same file,
// interleaved in the same run on the local cluster: a qcow2 (2 GiB virtual, --data-mib
// of data; 512 MiB by default) served over HTTP by a pod inside the cluster is imported
// as raw onto a local StorageDomain by the real operator and its job pod (download with
// the SHA-256 taken on the way, format check, qemu-img convert, rename), and the same
// qcow2 is converted to raw by `qemu-img convert` on this machine into the same
// directory. `import_ms` is the job's own time (start of the importer to the image in
// place, as it reports in status.importDurationMs); `e2e_ms` is kubectl apply → Ready
// (pod start and status polling included); `ratio` = import_ms / qemu_img_convert_ms;
// `import_download_ms` and `import_convert_ms` split the job's time as it reports it.
// The same convert also runs in a pod on the simulated nodes, timed inside it
// (`qemu_img_convert_pod_ms`, `ratio_pod`): the pods there share one CPU weight.
// No guest runs: the accelerator plays no part.
//   npm run bench -- image-import [--reps N] [--data-mib M]   (defaults 3, 512)
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { z } from 'zod';
import { ensureCluster, eventually, type TestCluster } from '../support/cluster.ts';
import { startSuiteOperator, stopOperator } from '../operator/operator-process.ts';
import { apply, scratch } from '../operator/vm-fixtures.ts';
import { imageBench } from '../image/image-fixtures.ts';

const run = promisify(execFile);

function median(values: readonly number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] ?? NaN) : ((s[mid - 1] ?? NaN) + (s[mid] ?? NaN)) / 2;
}

function option(args: readonly string[], name: string, fallback: number): number {
  const at = args.indexOf(name);
  const value = at >= 0 ? Number(args[at + 1]) : fallback;
  if (!Number.isInteger(value) || value <= 0) throw new RangeError(`${name} must be a positive integer`);
  return value;
}

async function sha256Of(file: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

const importedLine = z.object({ msg: z.literal('image imported'), downloadMs: z.number(), convertMs: z.number() });

const failedLine = z.object({ msg: z.literal('image import failed'), reason: z.string(), message: z.string() });

const terminated = z.object({
  status: z
    .object({
      phase: z.string().optional(),
      containerStatuses: z.array(z.object({ state: z.object({ terminated: z.object({ message: z.string().optional() }).optional() }).optional() })).optional(),
    })
    .optional(),
});

/**
 * The same `qemu-img convert` run in a pod on the simulated nodes, timed inside the pod:
 * the importer's job pod shares the nodes' CPU weight with every other pod, which a
 * process of this machine does not.
 */
async function convertInPod(cluster: TestCluster, namespace: string, dirs: { srvDir: string; domainDir: string }, rep: number): Promise<number> {
  const name = `convert-${rep}`;
  const script = `s=$(date +%s%3N); qemu-img convert -q -f qcow2 -O raw /srv/disk.qcow2 /out/pod-baseline.raw; e=$(date +%s%3N); rm -f /out/pod-baseline.raw; echo $((e - s)) > /dev/termination-log`;
  apply(cluster, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace },
    spec: {
      restartPolicy: 'Never',
      automountServiceAccountToken: false,
      containers: [
        {
          name: 'convert',
          image: 'keyvirt/host:dev',
          imagePullPolicy: 'Never',
          command: ['sh', '-c', script],
          volumeMounts: [{ name: 'srv', mountPath: '/srv', readOnly: true }, { name: 'out', mountPath: '/out' }],
        },
      ],
      volumes: [{ name: 'srv', hostPath: { path: dirs.srvDir, type: 'Directory' } }, { name: 'out', hostPath: { path: dirs.domainDir, type: 'Directory' } }],
    },
  });
  const ms = await eventually(`pod ${name} done`, () => {
    const pod = terminated.parse(JSON.parse(cluster.kubectl(['get', 'pod', name, '-n', namespace, '-o', 'json'])));
    if (pod.status?.phase === 'Failed') throw new Error(`pod ${name} failed`);
    const message = pod.status?.containerStatuses?.[0]?.state?.terminated?.message;
    return pod.status?.phase === 'Succeeded' && message !== undefined ? Number(message.trim()) : undefined;
  }, 600_000, 500);
  cluster.kubectl(['delete', 'pod', name, '-n', namespace, '--wait=false']);
  return ms;
}

export async function main(args: readonly string[]): Promise<void> {
  const reps = option(args, '--reps', 3);
  const dataMib = option(args, '--data-mib', 512);
  const cluster = await ensureCluster();
  const s = await scratch(cluster, 'kv-bench-img');
  const operator = await startSuiteOperator(cluster, s, 'image-import-bench');
  let source = '';
  const b = await imageBench(cluster, s, {
    rate: 0,
    fill: async (srvDir) => {
      source = path.join(srvDir, 'disk.qcow2');
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', source, '2G']);
      // Data in 64 MiB runs with a different byte each, spread over the disk.
      const commands = Array.from({ length: Math.ceil(dataMib / 64) }, (_, i) => ['-c', `write -P ${(i % 250) + 1} ${i * 128}M 64M`]).flat();
      await run('qemu-io', [...commands, source]);
    },
  });
  try {
    const bytes = (await stat(source)).size;
    const sha256 = await sha256Of(source);
    const imports: number[] = [];
    const e2e: number[] = [];
    const converts: number[] = [];
    const podConverts: number[] = [];
    const downloads: number[] = [];
    const jobConverts: number[] = [];
    let seen = 0;
    const lost: number[] = [];
    for (let i = 0; i < reps; i++) {
      const baseline = path.join(b.domainDir, `baseline-${i}.raw`);
      const t0 = performance.now();
      await run('qemu-img', ['convert', '-q', '-f', 'qcow2', '-O', 'raw', source, baseline]);
      converts.push(Math.round(performance.now() - t0));
      await rm(baseline);
      podConverts.push(await convertInPod(cluster, s.namespace, b, i));
      const name = `bench-${i}`;
      const t1 = performance.now();
      apply(cluster, b.httpImage(name, b.url('disk.qcow2'), { sha256, format: 'raw' }));
      const ready = await b.waitImage(name, 'Ready', (img) => {
        if (img.status?.phase === 'Failed') throw new Error(`import failed: ${img.status.reason ?? ''} ${img.status.message ?? ''}`);
        return img.status?.phase === 'Ready';
      }, 900_000);
      e2e.push(Math.round(performance.now() - t1));
      imports.push(ready.status?.importDurationMs ?? NaN);
      // Where the job's time went, as the importer reports it (the operator logs it): download with the hash on the way, then conversion.
      const lines = await operator.logLines();
      const split = lines.map((l) => importedLine.safeParse(l)).filter((p) => p.success).at(-1)?.data;
      // A job that failed before the one that reported (its retry finds the image in place and reports in milliseconds).
      for (const l of lines.slice(seen)) {
        const failed = failedLine.safeParse(l);
        if (failed.success) process.stdout.write(`rep ${i + 1}/${reps}: a job failed first: ${failed.data.reason}: ${failed.data.message.slice(0, 300)}\n`);
      }
      seen = lines.length;
      downloads.push(split?.downloadMs ?? NaN);
      jobConverts.push(split?.convertMs ?? NaN);
      // A job that downloaded nothing found the image in place: the job that imported it ended without its report reaching the operator (its pod went), so its time is unknown.
      if (split !== undefined && split.downloadMs === 0 && split.convertMs === 0) {
        lost.push(i + 1);
        process.stdout.write(`rep ${i + 1}/${reps}: the job that imported ended unseen; a second job found the image in place (not counted)\n`);
      }
      process.stdout.write(
        `rep ${i + 1}/${reps}: import_ms=${imports.at(-1)} (download_ms=${downloads.at(-1)} convert_ms=${jobConverts.at(-1)}) e2e_ms=${e2e.at(-1)} qemu_img_convert_ms=${converts.at(-1)} qemu_img_convert_pod_ms=${podConverts.at(-1)} load=${loadavg()[0]?.toFixed(1) ?? '?'}\n`,
      );
      cluster.kubectl(['delete', 'virtualmachineimage', name, '-n', s.namespace, '--wait=true', '--timeout=120s']);
    }
    const counted = (values: readonly number[]): number[] => values.filter((_, k) => !lost.includes(k + 1));
    const importMs = median(counted(imports));
    const convertMs = median(converts);
    process.stdout.write(
      `BENCH image-import bytes=${bytes} virtual_bytes=${2 * 1024 ** 3} format=qcow2->raw checksum=sha256 reps=${reps} import_ms=${importMs} e2e_ms=${median(e2e)} qemu_img_convert_ms=${convertMs} ratio=${(importMs / convertMs).toFixed(2)} qemu_img_convert_pod_ms=${median(podConverts)} import_download_ms=${median(counted(downloads).filter((v) => !Number.isNaN(v)))} import_convert_ms=${median(counted(jobConverts).filter((v) => !Number.isNaN(v)))} reps_lost=${lost.length} ratio_pod=${(importMs / median(podConverts)).toFixed(2)} import_ms_all=${imports.join(',')} qemu_img_convert_ms_all=${converts.join(',')} load=${loadavg()[0]?.toFixed(1) ?? '?'}\n`,
    );
  } finally {
    await b.cleanup(() => stopOperator(operator));
  }
}
