// Certificates of a real node, signed by the local cluster's CA: the kubelet's client
// certificate (system:node:<name> in system:nodes, for the Node authorizer) and its
// serving certificate (the node's address and name), which the API server verifies when
// it proxies logs, exec and port-forward. Minted afresh at every start of the node.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { RealNodePlan } from './real-node-config.ts';

function openssl(args: readonly string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function sign(pkiDir: string, key: string, cert: string, subject: string, extensions: string): void {
  const csr = `${cert}.csr`;
  const ext = `${cert}.ext`;
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key]);
  fs.chmodSync(key, 0o600);
  fs.writeFileSync(ext, extensions);
  openssl(['req', '-new', '-key', key, '-subj', subject, '-out', csr]);
  openssl([
    'x509', '-req', '-in', csr, '-CA', path.join(pkiDir, 'ca.crt'), '-CAkey', path.join(pkiDir, 'ca.key'),
    '-CAcreateserial', '-CAserial', path.join(path.dirname(cert), 'ca.srl'), '-days', '365', '-sha256', '-extfile', ext, '-out', cert,
  ]);
  fs.rmSync(csr);
  fs.rmSync(ext);
}

/** Writes the node's client and serving key pairs (replacing any earlier ones). */
export function mintRealNodeCertificates(pkiDir: string, plan: RealNodePlan): void {
  fs.mkdirSync(path.dirname(plan.clientCert), { recursive: true, mode: 0o700 });
  const subject = `/CN=system:node:${plan.name}/O=system:nodes`;
  sign(pkiDir, plan.clientKey, plan.clientCert, subject,
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n');
  sign(pkiDir, plan.servingKey, plan.servingCert, subject,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:${plan.nodeIp},DNS:${plan.name}\n`);
}
