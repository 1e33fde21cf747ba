// The TLS credentials of one live migration, as the operator hands them to the two
// launchers (ADR 0056): the per-migration CA certificate both ends trust, and the
// target's server certificate or the source's client certificate with its private key.
// PEM text only, bounded in size; each certificate must parse, the leaf must be signed
// by the CA and match its key, so a bad credential is refused with the field named
// before QEMU sees it. The private keys travel only in request bodies: no status or
// log carries them.
import type { X509Certificate } from 'node:crypto';
import { z } from 'zod';

/** The DNS name every target's server certificate carries and every source verifies by default. */
export const MIGRATION_TLS_HOSTNAME = 'migration.keyvirt.internal';

/** Upper bound of one PEM field; an EC P-256 certificate is under 1 KiB, an RSA-4096 key about 3.3 KiB. */
export const MAX_PEM_CHARS = 8192;

const BASE64_LINES = String.raw`(?:[A-Za-z0-9+/=]{1,76}\r?\n)+`;
const CERTIFICATE_PEM = new RegExp(String.raw`^-----BEGIN CERTIFICATE-----\r?\n${BASE64_LINES}-----END CERTIFICATE-----\r?\n?$`);
const PRIVATE_KEY_PEM = new RegExp(String.raw`^-----BEGIN ((?:EC |RSA )?PRIVATE KEY)-----\r?\n${BASE64_LINES}-----END \1-----\r?\n?$`);

const certificatePem = z
  .string()
  .max(MAX_PEM_CHARS)
  .regex(CERTIFICATE_PEM, 'must be one PEM "CERTIFICATE" block');
const privateKeyPem = z
  .string()
  .max(MAX_PEM_CHARS)
  .regex(PRIVATE_KEY_PEM, 'must be one unencrypted PEM "PRIVATE KEY" (PKCS#8, EC or RSA) block');

const tlsHostname = z
  .string()
  .min(1)
  .max(253)
  .regex(/^[A-Za-z0-9.:-]+$/, 'must be a DNS name or an IP address');

interface TlsPems {
  readonly caCert: string;
  readonly cert: string;
  readonly key: string;
}

/** The leaf must parse, be signed by the CA, match its key and not be a CA itself; the CA must be one. */
function checkChain(pems: TlsPems, ctx: z.RefinementCtx): void {
  // A field that is not even PEM-shaped has its issue already.
  const shaped = (pem: unknown, shape: RegExp): boolean => typeof pem === 'string' && pem.length <= MAX_PEM_CHARS && shape.test(pem);
  if (!shaped(pems.caCert, CERTIFICATE_PEM) || !shaped(pems.cert, CERTIFICATE_PEM) || !shaped(pems.key, PRIVATE_KEY_PEM)) return;
  // node:crypto is loaded by the first migration request, not by every launcher (ADR 0122).
  const { createPrivateKey, X509Certificate: Certificate } = process.getBuiltinModule('node:crypto');
  const parse = (field: 'caCert' | 'cert'): X509Certificate | undefined => {
    try {
      return new Certificate(pems[field]);
    } catch {
      ctx.addIssue({ code: 'custom', path: [field], message: 'is not a parsable X.509 certificate' });
      return undefined;
    }
  };
  const ca = parse('caCert');
  const leaf = parse('cert');
  let key;
  try {
    key = createPrivateKey(pems.key);
  } catch {
    ctx.addIssue({ code: 'custom', path: ['key'], message: 'is not a parsable private key' });
  }
  if (ca !== undefined && !ca.ca) ctx.addIssue({ code: 'custom', path: ['caCert'], message: 'is not a CA certificate' });
  if (ca === undefined || leaf === undefined) return;
  if (leaf.ca) ctx.addIssue({ code: 'custom', path: ['cert'], message: 'must be a leaf certificate, not a CA' });
  if (!leaf.checkIssued(ca) || !leaf.verify(ca.publicKey)) {
    ctx.addIssue({ code: 'custom', path: ['cert'], message: 'is not signed by caCert' });
  }
  if (key !== undefined && !leaf.checkPrivateKey(key)) ctx.addIssue({ code: 'custom', path: ['key'], message: 'does not match cert' });
}

/** The target's side: it listens with the server certificate and accepts only clients the CA signed. */
export const MigrationTlsServerCredentialsSchema = z
  .object({
    caCert: certificatePem.describe("The migration's CA certificate: the source's client certificate must chain to it"),
    cert: certificatePem.describe("The target's server certificate, signed by caCert"),
    key: privateKeyPem.describe("The server certificate's private key"),
  })
  .strict()
  .superRefine(checkChain);
export type MigrationTlsServerCredentials = z.output<typeof MigrationTlsServerCredentialsSchema>;

/** The source's side: it connects with the client certificate and accepts only a server the CA signed for `hostname`. */
export const MigrationTlsClientCredentialsSchema = z
  .object({
    caCert: certificatePem.describe("The migration's CA certificate: the target's server certificate must chain to it"),
    cert: certificatePem.describe("The source's client certificate, signed by caCert"),
    key: privateKeyPem.describe("The client certificate's private key"),
    hostname: tlsHostname
      .default(MIGRATION_TLS_HOSTNAME)
      .describe("The name the target's server certificate must carry (QEMU tls-hostname)"),
  })
  .strict()
  .superRefine(checkChain);
export type MigrationTlsClientCredentials = z.output<typeof MigrationTlsClientCredentialsSchema>;
export type MigrationTlsClientCredentialsInput = z.input<typeof MigrationTlsClientCredentialsSchema>;
