import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitRequestPath } from './request-path.ts';

void test('request targets: the origin form is split and decoded, anything else is a problem', () => {
  const cases: [string | undefined, ReturnType<typeof splitRequestPath>][] = [
    ['/v1/status', { path: '/v1/status', segments: ['v1', 'status'] }],
    ['/v1//status/?watch=1#x', { path: '/v1//status/', segments: ['v1', 'status'] }],
    ['/apis/a%2Fb/c%20d', { path: '/apis/a%2Fb/c%20d', segments: ['apis', 'a/b', 'c d'] }],
    ['/', { path: '/', segments: [] }],
    ['/?q=/x', { path: '/', segments: [] }],
    [undefined, { problem: 'not-origin-form' }],
    ['', { problem: 'not-origin-form' }],
    ['*', { problem: 'not-origin-form' }],
    ['http://h/v1/status', { problem: 'not-origin-form' }],
    ['/v1/%E0%A4%A', { problem: 'invalid-percent-encoding' }],
    ['/v1/%ff', { problem: 'invalid-percent-encoding' }],
  ];
  for (const [raw, want] of cases) assert.deepEqual(splitRequestPath(raw), want, String(raw));
});
