// The wire shapes of QMP (docs/interop/qmp-spec.rst in QEMU), parsed with zod at the socket edge.
import { z } from 'zod';

export const qmpGreetingSchema = z.object({
  QMP: z.object({
    version: z.object({
      qemu: z.object({ major: z.number(), minor: z.number(), micro: z.number() }),
      package: z.string(),
    }),
    capabilities: z.array(z.string()),
  }),
});
export type QmpGreeting = z.infer<typeof qmpGreetingSchema>;

const idSchema = z.union([z.string(), z.number()]);

export const qmpReturnSchema = z.object({ return: z.unknown(), id: idSchema.optional() });
export const qmpErrorSchema = z.object({
  error: z.object({ class: z.string(), desc: z.string() }),
  id: idSchema.optional(),
});
export const qmpEventSchema = z.object({
  event: z.string(),
  data: z.record(z.string(), z.unknown()).optional(),
  timestamp: z.object({ seconds: z.number(), microseconds: z.number() }),
});
export type QmpEvent = z.infer<typeof qmpEventSchema>;

export const qmpMessageSchema = z.union([qmpGreetingSchema, qmpReturnSchema, qmpErrorSchema, qmpEventSchema]);
export type QmpMessage = z.infer<typeof qmpMessageSchema>;

/** `query-status` (qapi/run-state.json). */
export const queryStatusSchema = z.object({
  running: z.boolean(),
  singlestep: z.boolean().optional(),
  status: z.string(),
});
export type QueryStatus = z.infer<typeof queryStatusSchema>;

/** Any command whose return value is an empty object. */
export const emptyReturnSchema = z.object({}).loose();
