import assert from 'node:assert/strict';
import { test } from 'node:test';
import { readAccessAnswer, subjectAccessReview, type AccessQuestion } from './access-review.ts';

const q: AccessQuestion = {
  user: { username: 'alice', uid: 'u-1', groups: ['dev'], extra: { scopes: ['x'] } },
  verb: 'get',
  namespace: 'ns-1',
  name: 'vm-1',
  subresource: 'console',
};

void test('asks about virtualmachines/<subresource> of subresources.keyvirt.io for the proxied user', () => {
  assert.deepEqual(subjectAccessReview(q), {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SubjectAccessReview',
    spec: {
      user: 'alice',
      uid: 'u-1',
      groups: ['dev'],
      extra: { scopes: ['x'] },
      resourceAttributes: { group: 'subresources.keyvirt.io', version: 'v1alpha1', resource: 'virtualmachines', subresource: 'console', namespace: 'ns-1', name: 'vm-1', verb: 'get' },
    },
  });
});

const answers: { name: string; answer: unknown; allowed: boolean; message?: RegExp }[] = [
  { name: 'allowed', answer: { status: { allowed: true } }, allowed: true },
  { name: 'denied with a reason', answer: { status: { allowed: false, reason: 'no RBAC policy matched' } }, allowed: false, message: /user "alice" cannot get resource "virtualmachines\/console" in API group "subresources.keyvirt.io" in the namespace "ns-1": no RBAC policy matched/ },
  { name: 'allowed and denied (denied wins)', answer: { status: { allowed: true, denied: true } }, allowed: false },
  { name: 'no status', answer: {}, allowed: false },
  { name: 'garbage', answer: 'yes', allowed: false },
  { name: 'allowed as a string', answer: { status: { allowed: 'true' } }, allowed: false },
];
for (const a of answers) {
  void test(`reads the answer: ${a.name}`, () => {
    const got = readAccessAnswer(q, a.answer);
    assert.equal(got.allowed, a.allowed);
    if (!got.allowed && a.message !== undefined) assert.match(got.message, a.message);
  });
}
