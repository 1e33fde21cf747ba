// Errors of the subresource server, answered as Kubernetes `Status` objects so that
// kubectl and client-node print them like any API error (ADR 0066).
export type StatusReason =
  | 'BadRequest'
  | 'Unauthorized'
  | 'Forbidden'
  | 'NotFound'
  | 'MethodNotAllowed'
  | 'Conflict'
  | 'RequestEntityTooLarge'
  | 'InternalError'
  | 'ServiceUnavailable';

export interface KubeStatus {
  kind: 'Status';
  apiVersion: 'v1';
  metadata: Record<string, never>;
  status: 'Failure';
  message: string;
  reason: StatusReason;
  code: number;
}

export class SubresourceError extends Error {
  override readonly name = 'SubresourceError';
  readonly code: number;
  readonly reason: StatusReason;
  constructor(code: number, reason: StatusReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.code = code;
    this.reason = reason;
  }

  toStatus(): KubeStatus {
    return { kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message: this.message, reason: this.reason, code: this.code };
  }
}

export const badRequest = (message: string): SubresourceError => new SubresourceError(400, 'BadRequest', message);
export const notFound = (message: string): SubresourceError => new SubresourceError(404, 'NotFound', message);
export const conflict = (message: string): SubresourceError => new SubresourceError(409, 'Conflict', message);
export const unavailable = (message: string, cause?: unknown): SubresourceError =>
  new SubresourceError(503, 'ServiceUnavailable', message, cause === undefined ? undefined : { cause });
