import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { allocate, AllocationError, DEVICE_KINDS, KVM_RESOURCE, listResponse, TUN_RESOURCE, unitIds, type DeviceKind, type DeviceNodeState } from './devices.ts';
import { AllocateRequest, AllocateResponse, ListAndWatchResponse } from './protocol.ts';
import { advertisedDevices } from './resource-names.ts';

function kind(resource: string): DeviceKind {
  const found = DEVICE_KINDS.find((k) => k.resource === resource);
  if (found === undefined) throw new RangeError(resource);
  return found;
}

void describe('unit IDs', () => {
  const cases: { units: number; first: string; last: string }[] = [
    { units: 1, first: 'kvm-0', last: 'kvm-0' },
    { units: 10, first: 'kvm-0', last: 'kvm-9' },
    { units: 110, first: 'kvm-000', last: 'kvm-109' },
    { units: 10_000, first: 'kvm-0000', last: 'kvm-9999' },
  ];
  for (const c of cases) {
    void it(`${c.units} units: ${c.first} … ${c.last}, unique and within 63 characters`, () => {
      const ids = unitIds(kind(KVM_RESOURCE), c.units);
      assert.equal(ids.length, c.units);
      assert.equal(ids[0], c.first);
      assert.equal(ids.at(-1), c.last);
      assert.equal(new Set(ids).size, c.units);
      assert.ok(ids.every((id) => id.length <= 63));
    });
  }
  for (const bad of [0, -1, 1.5, 10_001, Number.NaN]) {
    void it(`refuses ${bad} units`, () => assert.throws(() => unitIds(kind(KVM_RESOURCE), bad), RangeError));
  }
});

void describe('health follows the device node', () => {
  const cases: { state: DeviceNodeState; health: string }[] = [
    { state: 'character-device', health: 'Healthy' },
    { state: 'missing', health: 'Unhealthy' },
    { state: 'not-a-character-device', health: 'Unhealthy' },
  ];
  for (const c of cases) {
    void it(`${c.state}: every unit ${c.health}`, () => {
      const list = listResponse(unitIds(kind(TUN_RESOURCE), 3), c.state);
      assert.deepEqual(ListAndWatchResponse.parse(list), list);
      assert.deepEqual(list.devices.map((d) => [d.ID, d.health]), [['tun-0', c.health], ['tun-1', c.health], ['tun-2', c.health]]);
    });
  }
});

void describe('allocation', () => {
  const known = new Set(unitIds(kind(KVM_RESOURCE), 4));
  const cases: { name: string; request: AllocateRequest; error?: RegExp }[] = [
    { name: 'one container, one unit', request: { container_requests: [{ devices_ids: ['kvm-0'] }] } },
    { name: 'two containers, two units each', request: { container_requests: [{ devices_ids: ['kvm-0', 'kvm-1'] }, { devices_ids: ['kvm-2', 'kvm-3'] }] } },
    { name: 'no container', request: { container_requests: [] }, error: /names no container/ },
    { name: 'a container asking for nothing', request: { container_requests: [{ devices_ids: [] }] }, error: /asks for no devices.keyvirt.io\/kvm unit/ },
    { name: 'a unit never advertised', request: { container_requests: [{ devices_ids: ['kvm-0', 'kvm-9'] }] }, error: /does not offer: kvm-9/ },
    { name: "another device's unit", request: { container_requests: [{ devices_ids: ['tun-0'] }] }, error: /does not offer: tun-0/ },
  ];
  for (const c of cases) {
    void it(c.name, () => {
      if (c.error !== undefined) {
        assert.throws(() => allocate(kind(KVM_RESOURCE), known, c.request), (err: unknown) => err instanceof AllocationError && c.error?.test(err.message) === true);
        return;
      }
      const response = AllocateResponse.parse(allocate(kind(KVM_RESOURCE), known, c.request));
      assert.equal(response.container_responses.length, c.request.container_requests.length);
      for (const r of response.container_responses) {
        assert.deepEqual(r.devices, [{ container_path: '/dev/kvm', host_path: '/dev/kvm', permissions: 'rw' }]);
        assert.deepEqual(r.mounts, []);
        assert.deepEqual(r.envs, {});
      }
    });
  }

  void it('each device hands out its own node', () => {
    const paths = DEVICE_KINDS.map((k) => allocate(k, new Set(unitIds(k, 1)), { container_requests: [{ devices_ids: unitIds(k, 1) }] }).container_responses[0]?.devices[0]?.host_path);
    assert.deepEqual(paths, ['/dev/kvm', '/dev/net/tun', '/dev/vhost-net']);
  });
});

void describe('messages from the socket', () => {
  const cases: { name: string; value: unknown; ok: boolean }[] = [
    { name: 'an allocation', value: { container_requests: [{ devices_ids: ['kvm-0'] }] }, ok: true },
    { name: 'an ID longer than 63 characters', value: { container_requests: [{ devices_ids: ['k'.repeat(64)] }] }, ok: false },
    { name: 'an empty ID', value: { container_requests: [{ devices_ids: [''] }] }, ok: false },
    { name: 'IDs that are not strings', value: { container_requests: [{ devices_ids: [7] }] }, ok: false },
    { name: 'more than 256 containers', value: { container_requests: Array.from({ length: 257 }, () => ({ devices_ids: ['kvm-0'] })) }, ok: false },
  ];
  for (const c of cases) void it(`${c.ok ? 'accepts' : 'refuses'} ${c.name}`, () => assert.equal(AllocateRequest.safeParse(c.value).success, c.ok));
});

void describe('devices a node advertises', () => {
  const cases: { name: string; allocatable: Record<string, string> | undefined; want: string[] }[] = [
    { name: 'no status', allocatable: undefined, want: [] },
    { name: 'kvm and tun', allocatable: { cpu: '8', 'devices.keyvirt.io/tun': '110', 'devices.keyvirt.io/kvm': '110' }, want: [KVM_RESOURCE, TUN_RESOURCE] },
    { name: 'kvm unhealthy (no units)', allocatable: { 'devices.keyvirt.io/kvm': '0', 'devices.keyvirt.io/tun': '110' }, want: [TUN_RESOURCE] },
    { name: 'other extended resources', allocatable: { 'keyvirt.io/pci-10de-1eb8': '2', 'devices.kubevirt.io/kvm': '1k' }, want: [] },
    { name: 'a thousand units, as the API server writes them', allocatable: { 'devices.keyvirt.io/kvm': '1k' }, want: [KVM_RESOURCE] },
    { name: 'a quantity that is not one', allocatable: { 'devices.keyvirt.io/kvm': 'many' }, want: [] },
  ];
  for (const c of cases) void it(c.name, () => assert.deepEqual(advertisedDevices(c.allocatable), c.want));
});
