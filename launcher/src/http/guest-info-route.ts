// `GET /v1/guest`: the guest's OS, host name, users and file systems, asked from its
// agent now (not from the cached status), each part on its own: a command the agent
// refuses leaves that part out and names it in `unavailable`. Bounded (ADR 0101).
import { boundGuestInfo, type GuestInfoPart, type GuestInfoReport, type RawGuestInfo } from '../api/guest-info.ts';
import type { GuestAgentClient } from '../agent/client.ts';
import { HttpError } from './errors.ts';
import type { ApiServer } from './server.ts';

export type GuestInfoAgent = Pick<GuestAgentClient, 'osInfo' | 'hostName' | 'users' | 'filesystems'>;

/** Asks the agent for every part; a part that fails is listed as unavailable. */
export async function readGuestInfo(agent: GuestInfoAgent): Promise<GuestInfoReport> {
  const unavailable: GuestInfoPart[] = [];
  const attempt = async <T>(part: GuestInfoPart, call: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await call();
    } catch {
      unavailable.push(part);
      return undefined;
    }
  };
  const raw: RawGuestInfo = {
    os: await attempt('os', () => agent.osInfo()),
    hostname: await attempt('hostname', () => agent.hostName()),
    users: await attempt('users', () => agent.users()),
    filesystems: await attempt('filesystems', () => agent.filesystems()),
    unavailable,
  };
  return boundGuestInfo(raw);
}

export function registerGuestInfoRoute(server: ApiServer, agent: () => GuestInfoAgent | undefined): void {
  server.route('GET', '/v1/guest', async () => {
    const client = agent();
    if (client === undefined) throw new HttpError(409, 'Conflict', 'the guest agent is not connected');
    const report = await readGuestInfo(client);
    if (report.unavailable.length === 4) throw new HttpError(409, 'Conflict', 'the guest agent did not answer');
    return { status: 200, body: report };
  });
}
