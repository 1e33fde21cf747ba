import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtualMachineMigration } from '@keyvirt/crds';
import { pino } from 'pino';
import { Informer, type ListWatchClient } from '../runtime/informer.ts';
import { virtualMachineMigrationType } from '../vm/names.ts';
import { migrationsOfVm } from './migrations-of-vm.ts';

const migration = (namespace: string, name: string, vmName: string, rv = '1'): unknown => ({
  apiVersion: 'keyvirt.io/v1alpha1',
  kind: 'VirtualMachineMigration',
  metadata: { name, namespace, resourceVersion: rv },
  spec: { vmName },
});

void describe('migrationsOfVm', () => {
  void it("finds one VM's migrations by namespace and name, as they come, move and go", async () => {
    let emit: ((e: unknown) => void) | undefined;
    const client: ListWatchClient = {
      request: () => Promise.resolve({ metadata: { resourceVersion: '1' }, items: [migration('prod', 'm1', 'web'), migration('prod', 'm2', 'db'), migration('dev', 'm3', 'web')] }),
      watch: (_path, _query, handlers, signal) => {
        emit = handlers.onEvent;
        return Promise.resolve({ done: new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true })) });
      },
    };
    const informer = new Informer({ client, type: virtualMachineMigrationType, schema: VirtualMachineMigration, log: pino({ level: 'silent' }), sleep: () => Promise.resolve() });
    const of = migrationsOfVm(informer);
    assert.equal(migrationsOfVm(informer)({ namespace: 'prod', name: 'web' }).length, 0, 'a second call shares the index');
    const stop = new AbortController();
    const running = informer.run(stop.signal);
    await informer.waitForSync(stop.signal);
    const names = (namespace: string, name: string): string[] => of({ namespace, name }).map((m) => m.metadata.name).sort();
    assert.deepEqual(names('prod', 'web'), ['m1']);
    assert.deepEqual(names('dev', 'web'), ['m3'], 'the same VM name in another namespace is another VM');
    for (let i = 0; i < 1000 && emit === undefined; i++) await new Promise((r) => setImmediate(r));
    emit?.({ type: 'ADDED', object: migration('prod', 'm4', 'web', '2') });
    emit?.({ type: 'DELETED', object: migration('prod', 'm2', 'db', '3') });
    assert.deepEqual(names('prod', 'web'), ['m1', 'm4']);
    assert.deepEqual(names('prod', 'db'), []);
    stop.abort();
    await running;
  });
});
