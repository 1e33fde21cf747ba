// The launcher's public API: zod schemas of every request, response and event, the
// launcher configuration schema, and a typed client. The operator imports only this.
export * from './config.ts';
export * from './status.ts';
export * from './guest-report-bounds.ts';
export * from './client.ts';
export * from './migration.ts';
export * from './migration-client.ts';
export * from './migration-tuning.ts';
export * from './vm-metrics.ts';
export * from './guest-info.ts';
export * from './stream-client.ts';
export * from './pod-network.ts';
export * from './request-path.ts';
