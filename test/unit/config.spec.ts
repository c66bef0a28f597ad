import assert from 'node:assert/strict';
import { ConfigError, loadConfig, parseFps } from '../../src/config.ts';

describe('loadConfig', () => {
  it('gives working defaults on an empty environment', () => {
    const config = loadConfig({});
    assert.equal(config.port, 3000);
    assert.equal(config.redisUrl, 'redis://127.0.0.1:6379');
    assert.equal(config.databaseUrl, 'postgres://postgres@127.0.0.1:5432/postgres');
    assert.equal(config.batchSize, 16);
    assert.equal(config.defaultFps, 5);
    assert.equal(config.confidenceThreshold, 0.25);
    assert.equal(config.iouThreshold, 0.7);
    assert.ok(Object.isFrozen(config));
  });

  it('reads overrides', () => {
    const config = loadConfig({ PORT: '8080', BATCH_SIZE: '4', DEFAULT_FPS: 'all', MAX_UPLOAD_BYTES: '1000', NODE_ENV: 'production' });
    assert.equal(config.port, 8080);
    assert.equal(config.batchSize, 4);
    assert.equal(config.defaultFps, null);
    assert.equal(config.maxUploadBytes, 1000);
    assert.equal(config.logFormat, 'json');
  });

  it('names every bad value in one error', () => {
    assert.throws(
      () => loadConfig({ PORT: 'eighty', BATCH_SIZE: '0', REDIS_URL: 'http://x', DEFAULT_FPS: '-2', QUEUE_PREFIX: 'a b' }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        const text = error.problems.join('\n');
        for (const name of ['PORT', 'BATCH_SIZE', 'REDIS_URL', 'DEFAULT_FPS', 'QUEUE_PREFIX']) assert.match(text, new RegExp(name));
        assert.equal(error.problems.length, 5);
        return true;
      },
    );
  });

  it('refuses a fractional integer setting', () => {
    assert.throws(() => loadConfig({ BATCH_SIZE: '2.5' }), /BATCH_SIZE must be a whole number/);
  });
});

describe('parseFps', () => {
  it('accepts positive decimals up to the maximum', () => {
    assert.equal(parseFps('5', 60), 5);
    assert.equal(parseFps('0.5', 60), 0.5);
    assert.equal(parseFps('60', 60), 60);
  });
  it('refuses zero, negatives, too large, exponents and junk', () => {
    for (const raw of ['0', '-1', '61', '1e3', 'abc', '', '5fps', 'Infinity', 'NaN']) assert.equal(parseFps(raw, 60), undefined, raw);
  });
});
