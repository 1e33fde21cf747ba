import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_PART_BYTES, MIN_PART_BYTES, nextPartBytes, sentLine, standing, uploadReadiness, type ImageView } from './image-upload.ts';

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
    ['part of an upload received (interrupted): the rest goes', view({ upload: {} }, { phase: 'Importing', progress: { display: '37% 2Mi/s', bytes: 1_000_000 } }), 'send'],
    ['part received, no rate yet', view({ upload: {} }, { phase: 'Importing', progress: { display: '37%', bytes: 1_000_000 } }), 'send'],
    ['all received, being converted', view({ upload: {} }, { phase: 'Importing', progress: { display: '100% converting', bytes: 1_000_000 } }), 'wait'],
    ['the job starting, nothing received', view({ upload: {} }, { phase: 'Importing', progress: { display: '0%', bytes: 0 } }), 'wait'],
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

void describe('image-upload: parts', () => {
  void it('sizes the next part to last about 10 s at the rate of the last one, in 64 KiB steps, within bounds', () => {
    assert.equal(nextPartBytes(4 * 1024 * 1024, 1000), 40 * 1024 * 1024);
    assert.equal(nextPartBytes(4 * 1024 * 1024, 20_000), 2 * 1024 * 1024);
    assert.equal(nextPartBytes(1024 * 1024, 600_000), MIN_PART_BYTES, 'a slow link: the smallest part');
    assert.equal(nextPartBytes(64 * 1024 * 1024, 10), MAX_PART_BYTES, 'a fast link: the largest part');
    assert.equal(nextPartBytes(300_000, 1000) % (64 * 1024), 0);
  });
  void it('reads where the upload stands from an answer, or nothing', () => {
    assert.deepEqual(standing('the upload is at byte 1048576 of 3473408'), { at: 1_048_576, size: 3_473_408 });
    assert.deepEqual(standing('the import job refused the upload: offset: the upload is at byte 5 of 9, not 7'), { at: 5, size: 9 });
    assert.equal(standing('another part of this upload is being received'), undefined);
    assert.equal(standing('the upload is at byte 1234567890123456 of 1'), undefined, 'no more than 15 digits');
  });
});
