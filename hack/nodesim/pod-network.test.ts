import assert from 'node:assert/strict';
import { test } from 'node:test';
import { podMac } from './pod-network.ts';

test('a pod MAC is derived from its IP, so a reused IP keeps neighbours\' ARP entries right', () => {
  assert.equal(podMac('10.77.0.34'), '0a:58:0a:4d:00:22');
  assert.equal(podMac('10.77.0.255'), '0a:58:0a:4d:00:ff');
  assert.equal(podMac('10.77.0.34'), podMac('10.77.0.34'));
  assert.notEqual(podMac('10.77.0.34'), podMac('10.77.0.35'));
  assert.throws(() => podMac('10.77.0'), /not an IPv4 address/);
  assert.throws(() => podMac('10.77.0.256'), /not an IPv4 address/);
});
