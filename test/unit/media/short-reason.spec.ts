import assert from 'node:assert/strict';
import { shortReason } from '../../../src/media/media.repository.ts';

describe('shortReason', () => {
  it('drops log prefixes and server paths, keeps distinct reasons', () => {
    const stderr = [
      '[mov,mp4,m4a,3gp,3g2,mj2 @ 0x562bb1774440] moov atom not found',
      'file:/srv/storage/videos/abc/source: Invalid data found when processing input',
      '[mov,mp4,m4a,3gp,3g2,mj2 @ 0x562bb1774440] moov atom not found',
      '',
    ].join('\n');
    assert.equal(shortReason(stderr, '/srv/storage/videos/abc/source'), 'moov atom not found; Invalid data found when processing input');
  });

  it('names the file without its path anywhere in a line, and stays short', () => {
    assert.equal(shortReason("Error opening input file /srv/x.mp4.", '/srv/x.mp4'), 'Error opening input file the file.');
    assert.equal(shortReason('', '/x'), 'no reason given');
    assert.equal(shortReason('x'.repeat(500), '/x').length, 200);
  });
});
