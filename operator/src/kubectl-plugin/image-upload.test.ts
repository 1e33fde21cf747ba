import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sentLine, uploadReadiness, type ImageView } from './image-upload.ts';

const view = (source: ImageView['spec']['source'], status?: ImageView['status']): ImageView => ({
  metadata: { name: 'img', namespace: 'team' },
  spec: { source },
  ...(status === undefined ? {} : { status }),
});

void describe('image-upload: when to send', () => {
  const cases: [string, ImageView, 'send' | 'wait' | RegExp][] = [
    ['no status yet', view({ upload: {} }), 'wait'],
    ['the job starting', view({ upload: {} }, { phase: 'Importing', progress: { display: 'starting' } }), 'wait'],
    ['the job waiting for the bytes', view({ upload: {} }, { phase: 'Importing', progress: { display: 'waiting for upload' } }), 'send'],
    ['an image from a URL', view({ http: { url: 'http://x' } }), /does not take an upload/],
    ['a Ready image', view({ upload: {} }, { phase: 'Ready' }), /already Ready/],
    ['a Failed image', view({ upload: {} }, { phase: 'Failed', reason: 'CorruptImage', message: 'bad' }), /failed: CorruptImage: bad/],
  ];
  for (const [what, image, want] of cases) {
    void it(what, () => {
      const got = uploadReadiness(image);
      if (want instanceof RegExp) {
        assert.ok(typeof got === 'object', JSON.stringify(got));
        assert.match(got.why, want);
      } else assert.equal(got, want);
    });
  }
  void it('shows the bytes sent', () => {
    assert.equal(sentLine(12 * 1024 * 1024, 48 * 1024 * 1024), 'uploaded 12.0 MiB / 48.0 MiB (25%)');
  });
});
