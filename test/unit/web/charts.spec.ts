import assert from 'node:assert/strict';
import { classesByCount, niceTicks, stackBuckets, timelineBucketSeconds, timelineLanes } from '../../../web/src/lib/charts.ts';
import { detectionTitle, formatBytes, formatDuration, formatEta, progressPercent } from '../../../web/src/lib/format.ts';

describe('web app charts and formats', () => {
  it('cuts a video into at most 60 timeline buckets of a round size', () => {
    assert.equal(timelineBucketSeconds(8_000), 1);
    assert.equal(timelineBucketSeconds(79_500), 2);
    assert.equal(timelineBucketSeconds(600_000), 10);
    assert.equal(timelineBucketSeconds(3_600_000), 60);
    assert.equal(timelineBucketSeconds(100 * 3_600_000), 3600);
    assert.equal(timelineBucketSeconds(null), 10);
  });

  it('lays the summary out as one lane per class, most detections first, bars in time order', () => {
    const lanes = timelineLanes({
      classes: [
        { className: 'car', count: 3 },
        { className: 'person', count: 12 },
      ],
      buckets: [
        { startMs: 10_000, counts: { person: 7, car: 3 } },
        { startMs: 0, counts: { person: 5 } },
      ],
    });
    assert.deepEqual(lanes, [
      { className: 'person', total: 12, maxCount: 7, bars: [{ startMs: 0, count: 5 }, { startMs: 10_000, count: 7 }] },
      { className: 'car', total: 3, maxCount: 3, bars: [{ startMs: 10_000, count: 3 }] },
    ]);
  });

  it('stacks analytics counts per bucket in the legend order, and orders the legend by total', () => {
    const series = [
      { bucketStart: '2026-03-29T03:00:00+02:00', className: 'car', count: 2 },
      { bucketStart: '2026-03-29T01:00:00+01:00', className: 'person', count: 4 },
      { bucketStart: '2026-03-29T03:00:00+02:00', className: 'person', count: 3 },
    ];
    const order = classesByCount(series);
    assert.deepEqual(order, ['person', 'car']);
    assert.deepEqual(stackBuckets(series, order), [
      { bucketStart: '2026-03-29T01:00:00+01:00', startMs: Date.parse('2026-03-29T00:00:00Z'), total: 4, segments: [{ className: 'person', count: 4, from: 0 }] },
      {
        bucketStart: '2026-03-29T03:00:00+02:00',
        startMs: Date.parse('2026-03-29T01:00:00Z'),
        total: 5,
        segments: [
          { className: 'person', count: 3, from: 0 },
          { className: 'car', count: 2, from: 3 },
        ],
      },
    ]);
  });

  it('picks round axis ticks that reach the maximum', () => {
    assert.deepEqual(niceTicks(0), [0]);
    assert.deepEqual(niceTicks(7), [0, 2, 4, 6, 8]);
    assert.deepEqual(niceTicks(100), [0, 50, 100]);
    assert.deepEqual(niceTicks(1234), [0, 500, 1000, 1500]);
  });

  it('formats durations, times left, sizes, progress and box titles', () => {
    assert.equal(formatDuration(79_500), '1:19');
    assert.equal(formatDuration(3_723_000), '1:02:03');
    assert.equal(formatDuration(null), 'unknown');
    assert.equal(formatEta(null), null);
    assert.equal(formatEta(0.2), '1 s');
    assert.equal(formatEta(45), '45 s');
    assert.equal(formatEta(179), 'about 3 min');
    assert.equal(formatEta(7500), 'about 2 h 5 min');
    assert.equal(formatEta(7200), 'about 2 h');
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KB');
    assert.equal(formatBytes(40_000_000), '38.1 MB');
    assert.equal(progressPercent(3, 1, 8), 50);
    assert.equal(progressPercent(0, 0, null), null);
    assert.equal(progressPercent(0, 0, 0), 100);
    assert.equal(detectionTitle('person', 0.8712), 'person 0.87');
  });
});
