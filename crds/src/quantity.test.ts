import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BYTE_SIZE_PATTERN, parseQuantity, QUANTITY_PATTERN, quantityAtLeast, quantityAtMost } from './quantity.ts';

void test('parses binary, decimal, milli and exponent quantities', () => {
  assert.equal(parseQuantity('512Mi'), 512 * 2 ** 20);
  assert.equal(parseQuantity('2Gi'), 2 * 2 ** 30);
  assert.equal(parseQuantity('1.5Gi'), 1.5 * 2 ** 30);
  assert.equal(parseQuantity('20G'), 20e9);
  assert.equal(parseQuantity('100m'), 0.1);
  assert.equal(parseQuantity('1e3'), 1000);
  assert.equal(parseQuantity('12'), 12);
  assert.equal(parseQuantity('2 GB'), undefined);
  assert.equal(parseQuantity('Gi'), undefined);
});

void test('bounds compare by value, not by text', () => {
  assert.ok(quantityAtLeast('16Mi', '16Mi'));
  assert.ok(quantityAtLeast('1G', '512Mi'));
  assert.ok(!quantityAtLeast('8Mi', '16Mi'));
  assert.ok(quantityAtMost('4096Gi', '4Ti'));
  assert.ok(!quantityAtMost('4097Gi', '4Ti'));
});

void test('the byte size pattern is a strict subset of the Kubernetes quantity pattern', () => {
  const size = new RegExp(BYTE_SIZE_PATTERN);
  const quantity = new RegExp(QUANTITY_PATTERN);
  for (const ok of ['1', '512Mi', '1.5Gi', '20G', '0', '.5Ki']) {
    assert.ok(size.test(ok), ok);
    assert.ok(quantity.test(ok), ok);
  }
  for (const bad of ['-1Mi', '100m', '1e3', '2 GB', 'Mi', '1.']) assert.ok(!size.test(bad), bad);
});
