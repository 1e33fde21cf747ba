// The request target of an HTTP request, parsed without trusting it (splitRequestPath,
// shared with the operator's API server): only the origin form (`/path?query`) is
// served; every other form, and any path whose percent-encoding does not decode to
// UTF-8, is a 400 — never an exception that escapes the request.
import { splitRequestPath, type RequestPath } from '../api/request-path.ts';
import { HttpError } from './errors.ts';

export type RequestTarget = RequestPath;

/** Longest target echoed back in messages and logs. */
const SHOWN_CHARS = 120;

/** The target cut to a length fit for a log line or an error message. */
export function shownTarget(raw: string | undefined): string {
  const value = raw ?? '';
  return value.length > SHOWN_CHARS ? `${value.slice(0, SHOWN_CHARS)}…` : value;
}

export function parseRequestTarget(raw: string | undefined): RequestTarget {
  const split = splitRequestPath(raw);
  if (!('problem' in split)) return split;
  throw new HttpError(
    400,
    'BadRequest',
    split.problem === 'not-origin-form' ? 'the request target must be an absolute path (origin form)' : 'the request path has an invalid percent-encoding',
  );
}
