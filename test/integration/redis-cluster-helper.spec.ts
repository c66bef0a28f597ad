import assert from 'node:assert/strict';
import { createCluster } from 'redis';
import { keySlotOf, RedisCluster } from '../helpers/redis-cluster.ts';

// The test cluster itself, before anything of the service runs on it: three primaries with a replica
// each, a primary SIGKILLed, its replica promoted, and a write acknowledged by a replica (WAIT) kept.
describe('test helper: a private three-primary Redis Cluster with replicas', function () {
  this.timeout(120_000);
  let cluster: RedisCluster | undefined;
  let client: ReturnType<typeof createCluster> | undefined;

  before(async () => {
    cluster = await RedisCluster.start({ masters: 3, replicasPerMaster: 1 });
    client = createCluster({ rootNodes: cluster.rootNodes, defaults: { socket: { reconnectStrategy: () => 100 } } });
    client.on('error', () => {}); // the test kills a node on purpose
    await client.connect();
  });

  after(async () => {
    await client?.close().catch(() => undefined);
    await cluster?.stop();
  });

  it('has three primaries serving all 16384 slots, each with one replica', async () => {
    const topology = await cluster!.topology();
    const primaries = topology.filter((node) => node.role === 'master');
    assert.equal(primaries.length, 3);
    assert.equal(primaries.reduce((sum, node) => sum + node.slots.reduce((n, [from, to]) => n + to - from + 1, 0), 0), 16384);
    for (const primary of primaries) assert.equal(topology.filter((node) => node.masterId === primary.id).length, 1);
  });

  it('runs a multi-key script on keys that share a hash tag, and refuses keys in two slots', async () => {
    const script = "redis.call('RPUSH', KEYS[1], ARGV[1]); return redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT')";
    assert.equal(await client!.eval(script, { keys: ['{helper:0}:a', '{helper:0}:b'], arguments: ['job'] }), 'job');
    await assert.rejects(client!.eval(script, { keys: ['{helper:0}:a', '{helper:1}:b'], arguments: ['job'] }), /CROSSSLOT/);
  });

  it('keeps a write acknowledged by a replica (WAIT 1) when its primary is SIGKILLed and the replica takes over', async () => {
    const key = '{helper:failover}:list';
    await client!.rPush(key, ['one', 'two']);
    const acked = await client!.sendCommand(key, false, ['WAIT', '1', '5000']);
    assert.equal(acked, 1);
    const slot = keySlotOf(key);
    assert.equal(await cluster!.nodes[0]!.command('CLUSTER', 'KEYSLOT', key), String(slot));
    const servesSlot = ({ info }: { info: { slots: Array<[number, number]> } }) => info.slots.some(([from, to]) => slot >= from && slot <= to);
    const slotOwner = (await cluster!.primaries()).find(servesSlot)!;
    await cluster!.killPrimary(slotOwner.server);
    await cluster!.waitHealthy();
    const promoted = (await cluster!.primaries()).find(servesSlot)!;
    assert.notEqual(promoted.server.port, slotOwner.server.port);
    assert.deepEqual(await promoted.server.command('LLEN', key), '2');
  });
});
