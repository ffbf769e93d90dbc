// node-redis 5 with its default options against the proxy: commands, MULTI/EXEC, WATCH with a conflict made
// by a second client, a blocking pop woken by another client, Pub/Sub. Prints "ok" or exits non-zero with the
// first difference.
const { createClient, WatchError } = require("redis");
const assert = require("assert/strict");

async function main() {
  const url = "redis://" + process.argv[2];
  const a = await createClient({ url }).connect();
  const b = await createClient({ url }).connect();
  try {
    await a.del(["{nr}k", "{nr}n"]);
    assert.equal(await a.set("{nr}k", "v"), "OK");
    assert.equal(await a.get("{nr}k"), "v");
    assert.deepEqual(await a.multi().incr("{nr}n").get("{nr}n").exec(), [1, "1"]);
    await a.watch("{nr}n");
    await b.set("{nr}n", "10");
    await assert.rejects(a.multi().incr("{nr}n").exec(), WatchError);
    await a.watch("{nr}n");
    assert.deepEqual(await a.multi().incr("{nr}n").exec(), [11]);
    assert.deepEqual(await a.mGet(["{nr}k", "nosuch", "{nr}n"]), ["v", null, "11"]);

    await a.del("{nr}q");
    setTimeout(() => b.rPush("{nr}q", "job"), 200);
    assert.deepEqual(await a.blPop("{nr}q", 5), { key: "{nr}q", element: "job" });

    const sub = a.duplicate();
    await sub.connect();
    const got = [];
    let resolve;
    const done = new Promise((r) => { resolve = r; });
    const take = (m, ch) => { got.push([ch, m]); if (got.length === 2) resolve(); };
    await sub.subscribe("nr:news", take);
    await sub.pSubscribe("nr:p*", take);
    await b.publish("nr:news", "hello");
    await b.publish("nr:pat", "world");
    await done;
    assert.deepEqual(got, [["nr:news", "hello"], ["nr:pat", "world"]]);
    sub.destroy();
    console.log("ok");
  } finally {
    a.destroy();
    b.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
