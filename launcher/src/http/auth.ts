// Bearer-token authentication: the token comes from a file the pod mounts (a Secret),
// compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';

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
  if (token.length < 16) throw new TokenFileError(`token in ${path} is shorter than 16 characters`);
  return token;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

/** Compares digests so neither the content nor the length of the token leaks through timing. */
export function bearerTokenCheck(token: string): TokenCheck {
  const want = digest(token);
  return (req) => {
    const header = req.headers.authorization ?? '';
    const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const got = digest(match?.[1] ?? '');
    return timingSafeEqual(got, want) && match !== null;
  };
}
