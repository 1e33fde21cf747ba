// The lease block: round trip, fixed size, checksum, torn and foreign content.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { decodeLeaseBlock, encodeLeaseRecord, LEASE_BLOCK_SIZE } from './record.ts';
import type { LeaseRecord } from './record.ts';

const record: LeaseRecord = {
  version: 1,
  holder: '0b5e1c7a-2f0d-4a8e-9c3b-7d6e5f4a3b2c',
  node: 'node-a',
  generation: 3,
  counter: 12,
  state: 'held',
  renewIntervalMs: 1000,
  fenceTimeoutMs: 5000,
  acquireTimeoutMs: 8000,
};

void describe('lease block', () => {
  void it('is one 4096-byte block that decodes to the record', () => {
    const block = encodeLeaseRecord(record);
    assert.equal(block.length, LEASE_BLOCK_SIZE);
    const obs = decodeLeaseBlock(block);
    assert.equal(obs.kind, 'record');
    assert.deepEqual(obs.kind === 'record' ? obs.record : undefined, record);
  });
  void it('a flipped byte fails the checksum', () => {
    const block = encodeLeaseRecord(record);
    const at = block.indexOf('"counter":12') + '"counter":1'.length;
    block[at] = '3'.charCodeAt(0);
    const obs = decodeLeaseBlock(block);
    assert.deepEqual(obs.kind === 'invalid' ? obs.why : obs.kind, 'checksum mismatch');
  });
  void it('a torn block is invalid, an all-zero one empty', () => {
    assert.equal(decodeLeaseBlock(encodeLeaseRecord(record).subarray(0, 40)).kind, 'invalid');
    assert.equal(decodeLeaseBlock(Buffer.alloc(LEASE_BLOCK_SIZE)).kind, 'empty');
  });
  void it('foreign JSON and unknown fields are invalid', () => {
    assert.equal(decodeLeaseBlock(Buffer.from('{"hello":1,"checksum":"x"}')).kind, 'invalid');
    assert.equal(decodeLeaseBlock(Buffer.from('[1,2]')).kind, 'invalid');
  });
  void it('the key changes with every renewal', () => {
    const a = decodeLeaseBlock(encodeLeaseRecord(record));
    const b = decodeLeaseBlock(encodeLeaseRecord({ ...record, counter: 13 }));
    assert.notEqual(a.key, b.key);
  });
  void it('refuses a holder that is not an identifier', () => {
    assert.throws(() => encodeLeaseRecord({ ...record, holder: '../x' }));
  });
});
