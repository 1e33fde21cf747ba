// The launcher eviction webhook's path token (ADR 0121), read once at start from the file
// the chart mounts (the subresources Secret's `eviction-webhook-token`).
import { readSecretFile } from '../runtime/secret-file.ts';

/** At least this many characters (32 of 36 kinds: over 160 bits): the token is what tells the kube-apiserver's calls apart. */
export const MIN_WEBHOOK_TOKEN_LENGTH = 32;

/** Lower-case letters and digits: the API server takes a webhook path's segment only as a DNS label. */
const TOKEN_PATTERN = /^[a-z0-9]+$/;

export class WebhookTokenError extends Error {
  override readonly name = 'WebhookTokenError';
}

/** The token in `path` (surrounding whitespace dropped), or a WebhookTokenError naming the file and what is wrong. */
export function readWebhookToken(path: string): string {
  const token = readSecretFile(path, 'eviction webhook token', (message, options) => new WebhookTokenError(message, options));
  if (token.length < MIN_WEBHOOK_TOKEN_LENGTH) throw new WebhookTokenError(`the eviction webhook token in ${path} is shorter than ${MIN_WEBHOOK_TOKEN_LENGTH} characters`);
  if (!TOKEN_PATTERN.test(token)) throw new WebhookTokenError(`the eviction webhook token in ${path} holds characters other than a-z and 0-9`);
  return token;
}
