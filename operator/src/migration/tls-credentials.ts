// Mints the TLS credentials of one live migration (ADR 0055, 0056): a CA made for this
// migration alone, whose private key is dropped as soon as it has signed two leaves —
// a server certificate for the target launcher (SAN: the fixed migration DNS name and
// the target pod's IP) and a client certificate for the source launcher. Nothing else
// can ever chain to that CA, so QEMU's mutual verification (tls-creds-x509,
// verify-peer) admits exactly the two launchers of this migration. ECDSA P-256 and
// SHA-256 through Node's WebCrypto; X.509 encoding by @peculiar/x509. Pure apart from
// the randomness: the caller decides where the PEMs go (the launcher API bodies).
import 'reflect-metadata';
import { isIP } from 'node:net';
import { KeyObject, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { MIGRATION_TLS_HOSTNAME } from '@keyvirt/launcher/api';

/** One hour: long enough for any migration the completion timeout allows, short enough to be worthless later. */
export const DEFAULT_MIGRATION_CREDENTIALS_VALIDITY_MS = 60 * 60 * 1000;
/** The longest validity a caller may ask for. */
export const MAX_MIGRATION_CREDENTIALS_VALIDITY_MS = 24 * 60 * 60 * 1000;
/** notBefore lies this far in the past, so a node whose clock runs a little behind still accepts the certificates. */
export const CLOCK_SKEW_ALLOWANCE_MS = 5 * 60 * 1000;

export interface MintMigrationCredentialsInput {
  readonly vmNamespace: string;
  readonly vmName: string;
  /** The VirtualMachineMigration's uid: names the CA and the leaves. */
  readonly migrationUid: string;
  /** The target launcher pod's IP: the server certificate's IP SAN. */
  readonly targetHost: string;
  /** Validity from now; 1 h by default, at most 24 h. */
  readonly validForMs?: number;
  /** The current time; injected by tests. */
  readonly now?: Date;
}

export interface CertificateAndKey {
  /** PEM "CERTIFICATE". */
  readonly cert: string;
  /** PEM "PRIVATE KEY" (PKCS#8, unencrypted). */
  readonly key: string;
}

export interface MigrationCredentials {
  /** The migration's CA certificate (PEM); its private key no longer exists. */
  readonly caCert: string;
  /** For the target launcher (prepareIncoming's `tls`, with caCert). */
  readonly server: CertificateAndKey;
  /** For the source launcher (start's `tls`, with caCert and the hostname). */
  readonly client: CertificateAndKey;
  /** The name the server certificate carries; the source verifies it (QEMU tls-hostname). */
  readonly tlsHostname: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export class MigrationCredentialsInputError extends Error {
  override name = 'MigrationCredentialsInputError';
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const UID = /^[A-Za-z0-9._-]{1,64}$/;

const KEY_ALGORITHM: webcrypto.EcKeyGenParams = { name: 'ECDSA', namedCurve: 'P-256' };
const SIGNING_ALGORITHM: webcrypto.EcdsaParams = { name: 'ECDSA', hash: 'SHA-256' };

function validate(input: MintMigrationCredentialsInput): number {
  const bad = (field: string, message: string): never => {
    throw new MigrationCredentialsInputError(`${field} ${message}`);
  };
  if (!DNS_LABEL.test(input.vmNamespace)) bad('vmNamespace', `${JSON.stringify(input.vmNamespace)} is not a namespace name`);
  if (!DNS_SUBDOMAIN.test(input.vmName)) bad('vmName', `${JSON.stringify(input.vmName)} is not a VM name`);
  if (!UID.test(input.migrationUid)) bad('migrationUid', `${JSON.stringify(input.migrationUid)} is not a uid`);
  if (isIP(input.targetHost) === 0) bad('targetHost', `${JSON.stringify(input.targetHost)} is not an IP address`);
  const validFor = input.validForMs ?? DEFAULT_MIGRATION_CREDENTIALS_VALIDITY_MS;
  if (!Number.isInteger(validFor) || validFor <= 0 || validFor > MAX_MIGRATION_CREDENTIALS_VALIDITY_MS) {
    bad('validForMs', `must be a whole number of milliseconds in 1..${MAX_MIGRATION_CREDENTIALS_VALIDITY_MS}`);
  }
  return validFor;
}

/** A random positive 128-bit serial number, hex (RFC 5280: at most 20 octets, positive). */
function serialNumber(): string {
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = (bytes[0] ?? 0) & 0x7f | 0x01;
  return Buffer.from(bytes).toString('hex');
}

/** `extractable` only for the leaves, whose private keys travel; the CA's never leaves this process. */
async function keyPair(extractable: boolean): Promise<webcrypto.CryptoKeyPair> {
  return webcrypto.subtle.generateKey(KEY_ALGORITHM, extractable, ['sign', 'verify']);
}

function privateKeyPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Mints a fresh CA and the two leaves of one migration. */
export async function mintMigrationCredentials(input: MintMigrationCredentialsInput): Promise<MigrationCredentials> {
  const validForMs = validate(input);
  const now = input.now ?? new Date();
  const notBefore = new Date(now.getTime() - CLOCK_SKEW_ALLOWANCE_MS);
  const notAfter = new Date(now.getTime() + validForMs);
  const identity = `urn:keyvirt:migration:${input.vmNamespace}:${input.vmName}:${input.migrationUid}`;
  const validity = { notBefore, notAfter, signingAlgorithm: SIGNING_ALGORITHM };

  const caKeys = await keyPair(false);
  const ca = await x509.X509CertificateGenerator.createSelfSigned(
    {
      ...validity,
      serialNumber: serialNumber(),
      name: [{ CN: [`KeyVirt migration CA ${input.migrationUid}`] }, { O: ['keyvirt.io'] }],
      keys: caKeys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(caKeys.publicKey, false, webcrypto),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identity }]),
      ],
    },
    webcrypto,
  );
  const authorityKeyId = await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey, false, webcrypto);

  const leaf = async (role: 'target' | 'source', names: x509.JsonGeneralName[]): Promise<CertificateAndKey> => {
    const keys = await keyPair(true);
    const cert = await x509.X509CertificateGenerator.create(
      {
        ...validity,
        serialNumber: serialNumber(),
        subject: [{ CN: [`KeyVirt migration ${role} ${input.migrationUid}`] }, { O: ['keyvirt.io'] }],
        issuer: ca.subjectName,
        publicKey: keys.publicKey,
        signingKey: caKeys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          // QEMU 7.2 refuses a leaf whose critical key usage lacks key encipherment (crypto/tlscredsx509.c).
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([role === 'target' ? x509.ExtendedKeyUsage.serverAuth : x509.ExtendedKeyUsage.clientAuth], false),
          new x509.SubjectAlternativeNameExtension([...names, { type: 'url', value: identity }]),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, webcrypto),
          authorityKeyId,
        ],
      },
      webcrypto,
    );
    return { cert: `${cert.toString('pem')}\n`, key: privateKeyPem(keys.privateKey) };
  };

  const server = await leaf('target', [
    { type: 'dns', value: MIGRATION_TLS_HOSTNAME },
    { type: 'ip', value: input.targetHost },
  ]);
  const client = await leaf('source', []);
  return { caCert: `${ca.toString('pem')}\n`, server, client, tlsHostname: MIGRATION_TLS_HOSTNAME, notBefore, notAfter };
}
