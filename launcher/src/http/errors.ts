// Errors a route handler throws to answer with an HTTP error body.
import type { ErrorBody } from '../api/status.ts';

type Code = ErrorBody['error']['code'];

export class HttpError extends Error {
  override name = 'HttpError';
  readonly status: number;
  readonly code: Code;
  readonly issues: { path: string; message: string }[] | undefined;
  constructor(status: number, code: Code, message: string, issues?: { path: string; message: string }[]) {
    super(message);
    this.status = status;
    this.code = code;
    this.issues = issues;
  }

  toBody(): ErrorBody {
    return { error: { code: this.code, message: this.message, ...(this.issues === undefined ? {} : { issues: this.issues }) } };
  }
}
