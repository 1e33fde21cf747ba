// Bearer-token authentication: the token comes from a file the pod mounts (a Secret),
// compared in constant time. The digests come from @noble/hashes, not node:crypto: a
// launcher that is not migrating never loads OpenSSL (~2 MiB resident and ~15 ms of its
// start's CPU under lite mode: ADR 0122).
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { sha256 } from '@noble/hashes/sha2.js';

export class TokenFileError extends Error {
  override name = 'TokenFileError';
}

export interface TokenCheck {
  (req: IncomingMessage): boolean;
}

/** Reads the token (surrounding whitespace trimmed); an empty token is refused. */
export async function readToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new TokenFileError(`cannot read token file ${path}: ${(err as Error).message}`, { cause: err });
  }
  const token = text.trim();
  const problem = tokenLengthProblem(token);
  if (problem !== undefined) throw new TokenFileError(`token in ${path} is ${problem}`);
  return token;
}

/**
 * The longest token read or presented. KeyVirt's tokens are 64 hex characters; a longer
 * presented token is refused before it is hashed, so a request with a 16 KiB header
 * costs no more SHA-256 work than one with a real token (JavaScript under lite mode
 * hashes ~1 MB/s).
 */
export const MAX_TOKEN_CHARS = 256;

/** What is wrong with a token's length (at least 16, at most MAX_TOKEN_CHARS characters), or undefined. */
export function tokenLengthProblem(token: string): string | undefined {
  if (token.length < 16) return 'shorter than 16 characters';
  if (token.length > MAX_TOKEN_CHARS) return `longer than ${MAX_TOKEN_CHARS} characters`;
  return undefined;
}

const encoder = new TextEncoder();

function digest(value: string): Uint8Array {
  return sha256(encoder.encode(value));
}

/** Whether two SHA-256 digests are equal, looking at every byte whatever the first difference. */
export function digestsEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== 32 || b.length !== 32) throw new RangeError('digestsEqual compares two SHA-256 digests');
  let diff = 0;
  for (let i = 0; i < 32; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

/** Compares digests so neither the content nor the length of the token leaks through timing. */
export function bearerTokenCheck(token: string): TokenCheck {
  if (token.length > MAX_TOKEN_CHARS) throw new RangeError(`a token is at most ${MAX_TOKEN_CHARS} characters`);
  const want = digest(token);
  return (req) => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const presented = match?.[1] ?? '';
    if (presented.length > MAX_TOKEN_CHARS) return false;
    return digestsEqual(digest(presented), want) && match !== null;
  };
}
