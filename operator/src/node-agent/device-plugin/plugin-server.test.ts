// One plugin's gRPC service on a real unix socket, called as any process of the node may
// call it: good requests, unknown or overlong IDs, bytes that are no protobuf at all, and
// a device node that disappears while the kubelet watches.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { pino } from 'pino';
import { DEVICE_KINDS, type DeviceNodeState } from './devices.ts';
import { PluginServer } from './plugin-server.ts';
import { AllocateResponse, callUnary, DevicePluginOptions, devicePluginService, ListAndWatchResponse, method, unixTarget } from './protocol.ts';

const kvm = DEVICE_KINDS[0];
if (kvm === undefined) throw new RangeError('no device kinds');

void describe('plugin server', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'keyvirt-plugin-'));
  const socketPath = path.join(dir, kvm.endpoint);
  let state: DeviceNodeState = 'character-device';
  const server = new PluginServer({ kind: kvm, units: 3, socketPath, probe: () => Promise.resolve(state), log: pino({ level: 'silent' }) });
  let client: grpc.Client;

  before(async () => {
    await server.start();
    client = new grpc.Client(unixTarget(socketPath), grpc.credentials.createInsecure());
  });

  after(async () => {
    client.close();
    await server.stop();
    assert.ok(!fs.existsSync(socketPath), 'the socket file is removed');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const allocate = (ids: string[]): Promise<AllocateResponse> =>
    callUnary(client, method(devicePluginService, 'Allocate'), { container_requests: [{ devices_ids: ids }] }, AllocateResponse, 5000);

  void it('states its options and allocates the device node for advertised units', async () => {
    assert.deepEqual(await callUnary(client, method(devicePluginService, 'GetDevicePluginOptions'), {}, DevicePluginOptions, 5000), {
      pre_start_required: false,
      get_preferred_allocation_available: false,
    });
    const response = await allocate(['kvm-0', 'kvm-2']);
    assert.deepEqual(response.container_responses[0]?.devices, [{ container_path: '/dev/kvm', host_path: '/dev/kvm', permissions: 'rw' }]);
  });

  const refusals: { name: string; ids: string[]; details: RegExp }[] = [
    { name: 'a unit it never advertised', ids: ['kvm-3'], details: /does not offer: kvm-3/ },
    { name: 'an ID longer than 63 characters', ids: ['x'.repeat(64)], details: /malformed AllocateRequest/ },
    { name: 'an empty ID', ids: [''], details: /malformed AllocateRequest/ },
  ];
  for (const r of refusals) {
    void it(`refuses ${r.name} with INVALID_ARGUMENT`, async () => {
      await assert.rejects(allocate(r.ids), (err: Error) => {
        const cause = err.cause as grpc.ServiceError;
        return cause.code === grpc.status.INVALID_ARGUMENT && r.details.test(cause.details);
      });
    });
  }

  void it('answers bytes that are no protobuf with an error and keeps serving', async () => {
    const def = method(devicePluginService, 'Allocate');
    const code = await new Promise<number>((resolve) => {
      client.makeUnaryRequest(def.path, (b: Buffer) => b, def.responseDeserialize, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]), (err) => resolve(err?.code ?? grpc.status.OK));
    });
    assert.notEqual(code, grpc.status.OK);
    assert.equal((await allocate(['kvm-1'])).container_responses.length, 1);
  });

  void it('streams the units, all Unhealthy once the device node is gone, Healthy again when it is back', async () => {
    const def = method(devicePluginService, 'ListAndWatch');
    const stream = client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {});
    const lists: ListAndWatchResponse[] = [];
    const next = (count: number): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (lists.length >= count) resolve();
          else setTimeout(check, 10);
        };
        check();
      });
    stream.on('data', (m: unknown) => lists.push(ListAndWatchResponse.parse(m)));
    stream.on('error', () => undefined);
    await next(1);
    assert.deepEqual(lists[0]?.devices.map((d) => d.health), ['Healthy', 'Healthy', 'Healthy']);
    state = 'missing';
    assert.equal(await server.refresh(), true);
    await next(2);
    assert.deepEqual(lists[1]?.devices.map((d) => d.health), ['Unhealthy', 'Unhealthy', 'Unhealthy']);
    await assert.rejects(allocate(['kvm-0']), (err: Error) => (err.cause as grpc.ServiceError).code === grpc.status.UNAVAILABLE);
    assert.equal(await server.refresh(), false, 'no change, nothing sent');
    state = 'character-device';
    await server.refresh();
    await next(3);
    assert.deepEqual(lists[2]?.devices.map((d) => [d.ID, d.health]), [['kvm-0', 'Healthy'], ['kvm-1', 'Healthy'], ['kvm-2', 'Healthy']]);
    stream.cancel();
  });
});
