import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import type { z } from 'zod';
import { QmpExecuteError, QmpTimeoutError } from '../qmp/errors.ts';
import { VmMetricsCollector, type MetricsAgent, type MetricsQmp, type MetricsVm } from './collector.ts';

const log = pino({ level: 'silent' });
const MiB = 1024 * 1024;

/** A QMP session that answers from a table; commands not in it fail as QEMU would. */
class TableQmp implements MetricsQmp {
  readonly calls: string[] = [];
  readonly answers: Record<string, unknown>;
  constructor(answers: Record<string, unknown>) {
    this.answers = answers;
  }
  execute<S extends z.ZodType>(command: string, _args: Readonly<Record<string, unknown>> | undefined, schema: S): Promise<z.infer<S>> {
    this.calls.push(command);
    if (!(command in this.answers)) return Promise.reject(new QmpExecuteError(command, undefined, 'DeviceNotActive', 'No balloon device has been activated'));
    const answer = this.answers[command];
    if (answer instanceof Error) return Promise.reject(answer);
    return Promise.resolve(schema.parse(answer));
  }
}

/** A guest agent that never answers (a hostile or hung guest). */
class SilentAgent implements MetricsAgent {
  calls = 0;
  execute<S extends z.ZodType>(): Promise<z.infer<S>> {
    this.calls++;
    return new Promise(() => undefined);
  }
}

class TableAgent implements MetricsAgent {
  readonly answers: Record<string, unknown>;
  constructor(answers: Record<string, unknown>) {
    this.answers = answers;
  }
  execute<S extends z.ZodType>(command: string, _args: Record<string, unknown> | undefined, schema: S): Promise<z.infer<S>> {
    return Promise.resolve(schema.parse(this.answers[command]));
  }
}

void describe('VmMetricsCollector', () => {
  let proc: string;
  const pid = 4242;

  before(async () => {
    proc = await mkdtemp(path.join(tmpdir(), 'kv-metrics-proc-'));
    for (const tid of [4250, 4251]) {
      await mkdir(path.join(proc, String(pid), 'task', String(tid)), { recursive: true });
    }
    await writeFile(path.join(proc, String(pid), 'task', '4250', 'schedstat'), '2500000000 100 7\n');
    // No schedstat for 4251: utime+stime from stat (300 + 100 ticks = 4 s).
    await writeFile(path.join(proc, String(pid), 'task', '4251', 'stat'), '4251 (CPU 1/TCG) S 1 1 1 0 -1 0 0 0 0 0 300 100 0 0\n');
    await writeFile(path.join(proc, String(pid), 'status'), 'Name:\tqemu\nVmRSS:\t  307200 kB\n');
    await writeFile(path.join(proc, String(pid), 'smaps'), '7f0000000000-7f0010000000 rw-p 00000000 00:00 0\nRss:              204800 kB\n');
    await mkdir(path.join(proc, 'self'), { recursive: true });
    await writeFile(path.join(proc, 'self', 'status'), 'VmRSS:\t  61440 kB\n');
  });
  after(() => rm(proc, { recursive: true, force: true }));

  const answers = {
    'query-cpus-fast': [
      { 'cpu-index': 0, 'thread-id': 4250 },
      { 'cpu-index': 1, 'thread-id': 4251 },
      { 'cpu-index': 2, 'thread-id': 4251 },
    ],
    'query-blockstats': [{ 'node-name': 'disk-root', stats: { rd_bytes: 10, wr_bytes: 20, rd_operations: 1, wr_operations: 2 } }],
    'query-migrate': { status: 'active', ram: { transferred: 1, remaining: 99, total: 100 } },
  };

  function vmWith(qmp: MetricsQmp | undefined, agent?: MetricsAgent, phase = 'Running'): MetricsVm {
    return { phase, qmp, agentClient: agent, qemuPid: qmp === undefined ? undefined : pid };
  }

  function collector(vm: MetricsVm, now: () => number = () => 0): VmMetricsCollector {
    return new VmMetricsCollector({ vm, identity: { namespace: 'ns', name: 'vm', uid: 'u1' }, guestBytes: 256 * MiB, interfaces: [{ name: 'default', macAddress: '52:54:00:4b:56:01' }], log, procRoot: proc, now });
  }

  void it('reads vCPU thread time, block counters, migration and memory, each vCPU thread once', async () => {
    const m = await collector(vmWith(new TableQmp(answers))).collect();
    assert.deepEqual(m.vcpus, [{ index: 0, seconds: 2.5 }, { index: 1, seconds: 4 }]);
    assert.equal(m.disks[0]?.writeBytes, 20);
    assert.equal(m.migration?.remainingBytes, 99);
    assert.equal(m.memory.qemuResidentBytes, 300 * MiB);
    assert.equal(m.memory.launcherResidentBytes, 60 * MiB);
    // 60 MiB launcher + (300 − 200) MiB QEMU outside the guest RAM.
    assert.equal(m.memory.overheadBytes, 160 * MiB);
    assert.equal(m.memory.balloonBytes, undefined);
  });

  void it('asks for the balloon once when QEMU has none', async () => {
    const qmp = new TableQmp(answers);
    let t = 0;
    const c = collector(vmWith(qmp), () => t);
    await c.collect();
    t += 5000;
    await c.collect();
    assert.equal(qmp.calls.filter((x) => x === 'query-balloon').length, 1);
  });

  void it('serves one collection per interval however many scrapes come', async () => {
    const qmp = new TableQmp(answers);
    const c = collector(vmWith(qmp));
    await Promise.all(Array.from({ length: 50 }, () => c.collect()));
    await c.collect();
    assert.equal(qmp.calls.filter((x) => x === 'query-blockstats').length, 1);
  });

  void it('answers without what QEMU does not answer in time', async () => {
    const m = await collector(vmWith(new TableQmp({ ...answers, 'query-blockstats': new QmpTimeoutError('query-blockstats', 2000) }))).collect();
    assert.deepEqual(m.disks, []);
    assert.equal(m.vcpus.length, 2);
  });

  void it('never waits for a silent guest agent and asks it at most once per interval', async () => {
    const agent = new SilentAgent();
    let t = 0;
    const c = collector(vmWith(new TableQmp(answers), agent), () => t);
    for (let i = 0; i < 5; i++) {
      t += 2000;
      const m = await c.collect();
      assert.deepEqual(m.interfaces, []);
    }
    assert.equal(agent.calls, 1);
  });

  void it('takes the guest agent interfaces and file systems on a later scrape, bounded', async () => {
    const agent = new TableAgent({
      'guest-network-get-interfaces': [{ name: 'eth0', 'hardware-address': '52:54:00:4b:56:01', statistics: { 'rx-bytes': 5, 'rx-packets': 1, 'rx-errs': 0, 'rx-dropped': 0, 'tx-bytes': 7, 'tx-packets': 1, 'tx-errs': 0, 'tx-dropped': 0 } }],
      'guest-get-fsinfo': [{ name: 'vda1', mountpoint: '/', type: 'ext4', 'used-bytes': 1, 'total-bytes': 2 }],
    });
    let t = 0;
    const c = collector(vmWith(new TableQmp(answers), agent), () => t);
    await c.collect();
    await new Promise((r) => setImmediate(r));
    t += 2000;
    const m = await c.collect();
    assert.deepEqual(m.interfaces.map((i) => [i.name, i.receiveBytes, i.transmitBytes]), [['default', 5, 7]]);
    assert.deepEqual(m.filesystems, [{ mountpoint: '/', type: 'ext4', usedBytes: 1, totalBytes: 2 }]);
  });

  void it('leaves a paused guest agent alone and reports what QEMU knows before QEMU runs', async () => {
    const agent = new SilentAgent();
    await collector(vmWith(new TableQmp(answers), agent, 'Paused')).collect();
    assert.equal(agent.calls, 0);
    const m = await collector(vmWith(undefined, undefined, 'Starting')).collect();
    assert.deepEqual([m.vcpus, m.disks, m.memory.qemuResidentBytes], [[], [], undefined]);
  });
});
