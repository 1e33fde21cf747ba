import assert from 'node:assert/strict';
import { test } from 'node:test';
import { z } from 'zod';
import { LauncherProtocolError, LauncherTransport, MAX_STREAM_LINE_CHARS } from './transport.ts';

void test('an event stream line without end is refused once it passes the limit, not buffered', async () => {
  let sent = 0;
  const chunk = new TextEncoder().encode('x'.repeat(64 * 1024));
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      sent += chunk.length;
      controller.enqueue(chunk);
    },
  });
  const transport = new LauncherTransport({ baseUrl: 'http://launcher', token: 't', fetch: () => Promise.resolve(new Response(endless, { status: 200 })) });
  const read = async (): Promise<void> => {
    for await (const line of transport.stream('/v1/events', z.unknown(), 'events')) assert.fail(`unexpected line ${String(line)}`);
  };
  await assert.rejects(read(), LauncherProtocolError);
  assert.ok(sent <= MAX_STREAM_LINE_CHARS + 2 * chunk.length, `read ${sent} bytes before refusing`);
});
