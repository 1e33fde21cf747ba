import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';
import { cpuBudgetFields, untilMachineQuiet } from './cpu-budget.ts';
import { cpuSince, machineCpu } from './process-cpu.ts';

void describe('cpuBudgetFields', () => {
  void it('sets the clients apart, and says how many cores the rest needs for 60 s', () => {
    const window = {
      text: '',
      ms: new Map([
        ['apiserver', 90_000],
        ['bench', 20_000],
      ]),
      machine: { busyMs: 200_000, idleMs: 50_000 },
    };
    const fields = cpuBudgetFields('to_all_pods_', window, 10_000);
    assert.match(fields, / to_all_pods_cluster_cpu_ms_per_vm=18\.0 /);
    assert.match(fields, / to_all_pods_cpu_ms_per_vm=apiserver=9\.0,bench=2\.0 /);
    assert.match(fields, / to_all_pods_unmeasured_cpu_ms_per_vm=9\.0 /);
    assert.match(fields, / to_all_pods_machine_busy_pct=80 /);
    assert.match(fields, / to_all_pods_cores_for_60s=3\.0$/);
  });
});

void describe('untilMachineQuiet', () => {
  void it('waits while this process keeps a core busy, gives up after its timeout, and returns at once under a bound no machine reaches', async () => {
    let spin = true;
    const spinner = (async (): Promise<void> => {
      while (spin) {
        const until = Date.now() + 50;
        while (Date.now() < until) Math.sqrt(Math.random());
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    })();
    const said: string[] = [];
    const busy = await untilMachineQuiet((l) => said.push(l), { maxPct: 50, windowMs: 300, timeoutMs: 600 });
    assert.ok(busy.busyPct >= 50, `a spinning core read as ${busy.busyPct} %`);
    assert.ok(busy.waitedMs >= 600);
    assert.match(said.join('\n'), /still \d+ % of a core busy/);
    spin = false;
    await spinner;
    // Above what every core busy can read: quiet after one window, whatever else runs here.
    const quiet = await untilMachineQuiet(() => undefined, { maxPct: availableParallelism() * 100 + 50, windowMs: 300, timeoutMs: 60_000 });
    assert.ok(quiet.waitedMs < 5_000, `waited ${quiet.waitedMs} ms`);
  });
});

void describe('machineCpu', () => {
  void it('counts this process spinning as busy time of the machine', async () => {
    const since = await cpuSince(new Map([['bench', 'self']]));
    const before = await machineCpu();
    const until = Date.now() + 300;
    while (Date.now() < until) Math.sqrt(Math.random());
    const window = await since();
    const after = await machineCpu();
    const self = window.ms.get('bench') ?? 0;
    assert.ok(self > 0, 'this process used no CPU while it spun');
    // The machine's busy time includes this process's (clock ticks: 10 ms granularity).
    assert.ok(window.machine.busyMs >= self - 20, `machine busy ${window.machine.busyMs} ms < this process's ${self} ms`);
    assert.ok(after.busyMs - before.busyMs >= self - 20);
    assert.ok(window.machine.idleMs >= 0);
  });
});
