// ioredis with its default options against the proxy: commands, a pipeline, MULTI/EXEC, WATCH with a
// conflict made by a second client, a blocking move woken by another client, Pub/Sub with sharded channels, a
// script. Prints "ok" or exits non-zero with the first difference.
const Redis = require("ioredis");
const assert = require("assert/strict");

async function main() {
  const [host, port] = process.argv[2].split(":");
  const a = new Redis({ host, port: Number(port) });
  const b = new Redis({ host, port: Number(port) });
  try {
    await a.del("{io}k", "{io}n");
    assert.equal(await a.set("{io}k", "v"), "OK");
    assert.equal(await a.get("{io}k"), "v");
    assert.deepEqual(await a.pipeline().incr("{io}n").incr("{io}n").exec(), [[null, 1], [null, 2]]);
    assert.deepEqual(await a.multi().incr("{io}n").get("{io}n").exec(), [[null, 3], [null, "3"]]);
    assert.equal(await a.watch("{io}n"), "OK");
    await b.set("{io}n", "10");
    assert.equal(await a.multi().incr("{io}n").exec(), null); // the watch was touched
    assert.equal(await a.watch("{io}n"), "OK");
    assert.deepEqual(await a.multi().incr("{io}n").exec(), [[null, 11]]);
    await assert.rejects(a.multi().set("{io}k", "x").incr("{io}k", "extra").exec(), /EXECABORT/);
    assert.deepEqual(await a.mget("{io}k", "nosuch", "{io}n"), ["v", null, "11"]);

    await a.del("{io}q", "{io}w");
    setTimeout(() => b.lpush("{io}q", "job"), 200);
    assert.equal(await a.blmove("{io}q", "{io}w", "RIGHT", "LEFT", 5), "job");
    assert.deepEqual(await a.lrange("{io}w", 0, -1), ["job"]);

    const sub = new Redis({ host, port: Number(port) });
    const got = [];
    const done = new Promise((resolve) => {
      const take = (ch, m) => { got.push([ch, m]); if (got.length === 2) resolve(); };
      sub.on("message", take);
      sub.on("smessage", take);
    });
    await sub.subscribe("io:news");
    await sub.ssubscribe("{io}shard");
    await b.publish("io:news", "hello");
    await b.spublish("{io}shard", "world");
    await done;
    assert.deepEqual(got, [["io:news", "hello"], ["{io}shard", "world"]]);
    sub.disconnect();

    assert.equal(await a.eval("return redis.call('incr', KEYS[1])", 1, "{io}n"), 12);
    console.log("ok");
  } finally {
    a.disconnect();
    b.disconnect();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
