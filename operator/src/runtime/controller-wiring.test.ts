import assert from 'node:assert/strict';
import { test } from 'node:test';
import { selectorOption } from './controller-wiring.ts';

void test('an absent or empty selector lists every object; any other is passed on', () => {
  const cases: [string | undefined, { labelSelector?: string }][] = [
    [undefined, {}],
    ['', {}],
    ['team=a', { labelSelector: 'team=a' }],
    ['!keyvirt.io/other', { labelSelector: '!keyvirt.io/other' }],
  ];
  for (const [input, want] of cases) assert.deepEqual(selectorOption(input), want, String(input));
});
