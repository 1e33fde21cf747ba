import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { nodeNetNames, nodeSlice } from './layout.ts';

describe('node address slices', () => {
  it('gives node k the /28 at 16k, its first address to the node and 13 to pods', () => {
    const s = nodeSlice(2);
    assert.equal(s.podCidr, '10.77.0.32/28');
    assert.equal(s.nodeIp, '10.77.0.33');
    assert.equal(s.podIps.length, 13);
    assert.equal(s.podIps[0], '10.77.0.34');
    assert.equal(s.podIps.at(-1), '10.77.0.46');
    assert.equal(nodeSlice(15).podIps.at(-1), '10.77.0.254');
  });
  it('refuses indexes outside 1..15 and keeps interface names short', () => {
    assert.throws(() => nodeSlice(0), RangeError);
    assert.throws(() => nodeSlice(16), RangeError);
    assert.ok(nodeNetNames(15).uplinkHost.length <= 15);
  });
});
