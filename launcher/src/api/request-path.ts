// The path of an HTTP request target, split without trusting it, for both API servers
// (the launcher's and the operator's aggregated one). Only the origin form
// (`/path?query`, RFC 9112 §3.2.1) has a path; any other form, and a segment whose
// percent-encoding does not decode to UTF-8, is a problem the caller answers with a 400
// — never an exception. (`new URL('//a:99999/', base)` throws: the target reads as an
// authority.)

export interface RequestPath {
  /** The path as sent, without the query. */
  readonly path: string;
  /** The non-empty path segments, percent-decoded. */
  readonly segments: readonly string[];
}

export type RequestPathProblem = 'not-origin-form' | 'invalid-percent-encoding';

export function splitRequestPath(raw: string | undefined): RequestPath | { readonly problem: RequestPathProblem } {
  if (raw === undefined || !raw.startsWith('/')) return { problem: 'not-origin-form' };
  const end = raw.search(/[?#]/);
  const path = end < 0 ? raw : raw.slice(0, end);
  const segments: string[] = [];
  for (const part of path.split('/')) {
    if (part === '') continue;
    try {
      segments.push(decodeURIComponent(part));
    } catch {
      return { problem: 'invalid-percent-encoding' };
    }
  }
  return { path, segments };
}
