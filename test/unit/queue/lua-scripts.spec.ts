import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LuaScript } from '../../../src/queue/lua-script.ts';

const scriptsDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/queue/scripts');

describe('queue Lua scripts', () => {
  const files = fs.readdirSync(scriptsDir).filter((file) => file.endsWith('.lua'));

  it('exist', () => assert.ok(files.length >= 3));

  for (const file of files) {
    it(`${file}: the name carries the key count, and the header documents KEYS, ARGV and the return value`, () => {
      const script = new LuaScript(file, scriptsDir);
      const used = [...script.source.matchAll(/KEYS\[(\d+)\]/g)].map((m) => Number(m[1]));
      assert.equal(Math.max(...used), script.keyCount);
      const header = script.source.slice(0, script.source.indexOf(']]'));
      assert.ok(script.source.startsWith('--[['), 'starts with a comment block');
      for (let i = 1; i <= script.keyCount; i += 1) assert.match(header, new RegExp(`KEYS\\[${i}\\] `));
      assert.match(header, /ARGV\[1\]/);
      assert.match(header, /Returns /);
      // Keys are declared, never built inside the script.
      assert.doesNotMatch(script.source, /\.\.\s*ARGV|ARGV\[\d+\]\s*\.\./);
    });
  }

  it('refuses a file name without a key count, and a call with the wrong number of keys', async () => {
    assert.throws(() => new LuaScript('reclaim.lua', scriptsDir), /key count/);
    const script = new LuaScript('heartbeat-2.lua', scriptsDir);
    await assert.rejects(script.run(undefined as never, ['only-one'], []), /takes 2 keys/);
  });
});
