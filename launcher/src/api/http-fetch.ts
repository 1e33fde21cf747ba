// A `fetch` for the launcher's own calls to another launcher (the migration target's
// lease identity and resume time), built on node:http. The launcher runs under V8's lite
// mode (ADR 0077), which has no WebAssembly, and the global fetch parses HTTP with
// undici's WebAssembly llhttp: every launcher-to-launcher call failed there with
// "fetch failed" (ReferenceError: WebAssembly is not defined). node:http parses with the
// llhttp compiled into Node. Only what LauncherTransport uses is served: http: URLs,
// a method, string headers, a string body, an abort signal; the answer streams.
import http from 'node:http';
import { Readable } from 'node:stream';

export class HttpFetchError extends Error {
  override name = 'HttpFetchError';
}

function headerRecord(headers: RequestInit['headers']): Record<string, string> {
  return Object.fromEntries(new Headers(headers).entries());
}

/** `fetch` over node:http, for plain-HTTP launcher URLs. */
export function httpFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
  const url = new URL(input instanceof Request ? input.url : input);
  if (url.protocol !== 'http:') return Promise.reject(new HttpFetchError(`${url.protocol} URLs are not served: launcher URLs are http:`));
  if (init?.body !== undefined && init.body !== null && typeof init.body !== 'string') {
    return Promise.reject(new HttpFetchError('only string request bodies are served'));
  }
  const body = init?.body ?? undefined;
  const signal = init?.signal ?? undefined;
  return new Promise<Response>((resolve, reject) => {
    if (signal?.aborted === true) {
      reject(signal.reason as Error);
      return;
    }
    const headers = headerRecord(init?.headers);
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    const req = http.request(url, { method: init?.method ?? 'GET', headers, ...(signal === undefined ? {} : { signal }) }, (res) => {
      const responseHeaders = new Headers();
      for (const [name, value] of Object.entries(res.headers)) {
        if (value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) responseHeaders.append(name, v);
      }
      const status = res.statusCode ?? 502;
      // A null-body status (204, 304) must not be given a body.
      const nullBody = status === 204 || status === 304 || (init?.method ?? 'GET') === 'HEAD';
      if (nullBody) res.resume();
      resolve(new Response(nullBody ? null : (Readable.toWeb(res) as ReadableStream<Uint8Array>), { status, statusText: res.statusMessage ?? '', headers: responseHeaders }));
    });
    req.on('error', reject);
    req.end(body);
  });
}
