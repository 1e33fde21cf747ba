// The double-run checker's sampling loop, in a worker thread so that the test's own
// synchronous work (kubectl) never leaves it blind: samples every `intervalMs`, feeds
// the judge, answers `report` messages and stops on `stop`.
import { parentPort, workerData } from 'node:worker_threads';
import { z } from 'zod';
import { DoubleRunJudge } from './double-run-judge.ts';
import { sampleDisk, sampleQemus } from './double-run-sampler.ts';

const settings = z.object({
  guestName: z.string().min(1),
  disk: z.string().optional(),
  intervalMs: z.number().int().positive(),
  killLatencyMs: z.number().positive(),
}).parse(workerData);
const command = z.enum(['report', 'stop']);

const judge = new DoubleRunJudge(settings.killLatencyMs);
const sampleOnce = (): void => {
  judge.add({
    atMs: performance.timeOrigin + performance.now(),
    qemus: sampleQemus(settings.guestName),
    disk: settings.disk === undefined ? undefined : sampleDisk(settings.disk),
  });
};
sampleOnce();
const timer = setInterval(sampleOnce, settings.intervalMs);
parentPort?.on('message', (message: unknown) => {
  const what = command.parse(message);
  if (what === 'stop') {
    clearInterval(timer);
    sampleOnce();
  }
  parentPort?.postMessage(judge.report());
  if (what === 'stop') parentPort?.close();
});
