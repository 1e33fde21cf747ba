// Return shapes of the QEMU guest agent commands KeyVirt uses (qga/qapi-schema.json).
import { z } from 'zod';

export const agentReplySchema = z.union([
  z.object({ return: z.unknown() }),
  z.object({ error: z.object({ class: z.string(), desc: z.string() }) }),
]);

export const guestInfoSchema = z.object({
  version: z.string(),
  supported_commands: z.array(z.object({ name: z.string(), enabled: z.boolean(), 'success-response': z.boolean() })),
});
export type GuestInfo = z.infer<typeof guestInfoSchema>;

export const guestOsInfoSchema = z.object({
  'kernel-release': z.string().optional(),
  'kernel-version': z.string().optional(),
  machine: z.string().optional(),
  id: z.string().optional(),
  name: z.string().optional(),
  'pretty-name': z.string().optional(),
  version: z.string().optional(),
  'version-id': z.string().optional(),
  variant: z.string().optional(),
  'variant-id': z.string().optional(),
});
export type GuestOsInfo = z.infer<typeof guestOsInfoSchema>;

export const guestNetworkInterfacesSchema = z.array(
  z.object({
    name: z.string(),
    'hardware-address': z.string().optional(),
    'ip-addresses': z
      .array(z.object({ 'ip-address-type': z.enum(['ipv4', 'ipv6']), 'ip-address': z.string(), prefix: z.number() }))
      .optional(),
  }).loose(),
);
export type GuestNetworkInterfaces = z.infer<typeof guestNetworkInterfacesSchema>;

export const guestUsersSchema = z.array(z.object({ user: z.string(), domain: z.string().optional(), 'login-time': z.number() }));
export type GuestUsers = z.infer<typeof guestUsersSchema>;

export const guestFsInfoSchema = z.array(
  z.object({
    name: z.string(),
    mountpoint: z.string(),
    type: z.string(),
    'used-bytes': z.number().optional(),
    'total-bytes': z.number().optional(),
  }).loose(),
);
export type GuestFsInfo = z.infer<typeof guestFsInfoSchema>;

export const guestHostNameSchema = z.object({ 'host-name': z.string() });

export const fsfreezeCountSchema = z.number().int();
export const fsfreezeStatusSchema = z.enum(['thawed', 'frozen']);

export const guestExecSchema = z.object({ pid: z.number().int() });
export const guestExecStatusSchema = z.object({
  exited: z.boolean(),
  exitcode: z.number().int().optional(),
  signal: z.number().int().optional(),
  'out-data': z.string().optional(),
  'err-data': z.string().optional(),
  'out-truncated': z.boolean().optional(),
  'err-truncated': z.boolean().optional(),
});
export type GuestExecStatus = z.infer<typeof guestExecStatusSchema>;

export const emptyObjectSchema = z.object({}).loose();
