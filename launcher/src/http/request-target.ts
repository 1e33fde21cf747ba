// The request target of an HTTP request, parsed without trusting it. Only the origin
// form (`/path?query`, RFC 9112 §3.2.1) is served; every other form, and any path whose
// percent-encoding does not decode to UTF-8, is a 400 — never an exception that escapes
// the request. (`new URL('//a:99999/', base)` throws: the target reads as an authority.)
import { HttpError } from './errors.ts';

export interface RequestTarget {
  /** The path as sent, without the query. */
  readonly path: string;
  /** The non-empty path segments, percent-decoded. */
  readonly segments: readonly string[];
}

/** Longest target echoed back in messages and logs. */
const SHOWN_CHARS = 120;

/** The target cut to a length fit for a log line or an error message. */
export function shownTarget(raw: string | undefined): string {
  const value = raw ?? '';
  return value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value;
}

export function parseRequestTarget(raw: string | undefined): RequestTarget {
  if (raw === undefined || !raw.startsWith('/')) {
    throw new HttpError(400, 'BadRequest', 'the request target must be an absolute path (origin form)');
  }
  const end = raw.search(/[?#]/);
  const path = end < 0 ? raw : raw.slice(0, end);
  const segments: string[] = [];
  for (const part of path.split('/')) {
    if (part === '') continue;
    try {
      segments.push(decodeURIComponent(part));
    } catch {
      throw new HttpError(400, 'BadRequest', 'the request path has an invalid percent-encoding');
    }
  }
  return { path, segments };
}
