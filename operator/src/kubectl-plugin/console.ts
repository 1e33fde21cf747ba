// `kubectl keyvirt console`: this terminal ↔ the guest serial console, through the
// virtualmachines/console websocket (ADR 0066). In a terminal, raw mode: every key goes
// to the guest (Ctrl+C too) except Ctrl+] which leaves, as with virtctl and telnet.
// Without a terminal, stdin and stdout are piped as they are; the end of stdin does not
// close the console (the guest's answer may still be coming): Ctrl+] in the input,
// SIGINT or SIGTERM do.
import type { Readable, Writable } from 'node:stream';
import { UnreachableError } from './errors.ts';
import type { KeyVirtApi, VmRef } from './keyvirt-api.ts';
import type { CloseInfo, WebSocketStream } from './websocket-client.ts';

/** Ctrl+] */
export const ESCAPE_BYTE = 0x1d;

/** The bytes to send before the escape character, and whether it was typed. */
export function splitAtEscape(chunk: Buffer): { send: Buffer; escaped: boolean } {
  const i = chunk.indexOf(ESCAPE_BYTE);
  return i < 0 ? { send: chunk, escaped: false } : { send: chunk.subarray(0, i), escaped: true };
}

export interface TerminalInput extends Readable {
  isTTY?: boolean;
  setRawMode?: (mode: boolean) => unknown;
}

export interface ConsoleIo {
  readonly stdin: TerminalInput;
  readonly stdout: Writable;
  readonly stderr: Writable;
}

/** Resolves when the console ends: by Ctrl+], a signal, or the server closing it. */
export async function runConsole(api: KeyVirtApi, ref: VmRef, io: ConsoleIo): Promise<void> {
  const stream = await api.openStream(ref, 'console');
  const tty = io.stdin.isTTY === true && io.stdin.setRawMode !== undefined;
  io.stderr.write(`Connected to the console of VirtualMachine "${ref.name}" in namespace "${ref.namespace}". Escape character is ^]\n`);
  if (tty) io.stdin.setRawMode?.(true);
  let leaving = false;
  const leave = (): void => {
    if (leaving) return;
    leaving = true;
    stream.end();
    // A server that never answers the close frame does not hold the terminal.
    setTimeout(() => stream.destroy(), 2000).unref();
  };
  const onInput = (chunk: Buffer | string): void => {
    const { send, escaped } = splitAtEscape(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (send.length > 0 && !leaving) stream.write(send);
    if (escaped) leave();
  };
  io.stdin.on('data', onInput);
  stream.on('data', (chunk: Buffer) => io.stdout.write(chunk));
  process.once('SIGINT', leave);
  process.once('SIGTERM', leave);
  process.once('SIGHUP', leave);
  let info: CloseInfo;
  try {
    info = await closedOrLeft(stream, () => leaving);
  } finally {
    io.stdin.off('data', onInput);
    io.stdin.pause();
    if (tty) io.stdin.setRawMode?.(false);
    process.off('SIGINT', leave);
    process.off('SIGTERM', leave);
    process.off('SIGHUP', leave);
  }
  if (leaving) {
    io.stderr.write('\r\nConsole closed.\n');
    return;
  }
  if (info.code === 1000) {
    io.stderr.write(`\r\nThe console was closed by the server${info.reason !== '' ? `: ${info.reason}` : ''} (the VM stopped or its launcher went away).\n`);
    return;
  }
  throw new UnreachableError(`the console of VirtualMachine "${ref.name}" in namespace "${ref.namespace}" broke: ${String(info.code)} ${info.reason}`);
}

async function closedOrLeft(stream: WebSocketStream, left: () => boolean): Promise<CloseInfo> {
  const info = await stream.whenClosed;
  return left() ? { code: 1000, reason: '' } : info;
}
