// node-redis 5 with RESP: 3 against the proxy: HELLO 3, then maps, sets, doubles, nulls, MULTI/EXEC, WATCH
// with a conflict made by a second client, Pub/Sub push messages. Prints "ok" or exits non-zero with the
// first difference.
const { createClient, WatchError } = require("redis");
const assert = require("assert/strict");

async function main() {
  const url = "redis://" + process.argv[2];
  const a = await createClient({ url, RESP: 3 }).connect();
  const b = await createClient({ url, RESP: 3 }).connect();
  const sub = await createClient({ url, RESP: 3 }).connect();
  try {
    assert.match(await a.clientInfo().then((i) => String(i.resp)), /^3$/);
    await a.del(["{nr3}h", "{nr3}s", "{nr3}z", "{nr3}n", "{nr3}k"]);
    await a.hSet("{nr3}h", { f1: "v1", f2: "v2" });
    assert.deepEqual({ ...(await a.hGetAll("{nr3}h")) }, { f1: "v1", f2: "v2" });
    await a.sAdd("{nr3}s", ["x"]);
    assert.deepEqual([...(await a.sMembers("{nr3}s"))], ["x"]);
    await a.zAdd("{nr3}z", [{ score: 1.5, value: "m" }]);
    assert.equal(await a.zScore("{nr3}z", "m"), 1.5);
    assert.equal(await a.get("{nr3}nosuch"), null);
    await a.set("{nr3}k", "v");
    await a.set("nr3:other", "w");
    assert.deepEqual(await a.mGet(["{nr3}k", "nr3:nosuch", "nr3:other"]), ["v", null, "w"]);
    assert.deepEqual(await a.multi().incr("{nr3}n").get("{nr3}n").exec(), [1, "1"]);
    await a.watch("{nr3}n");
    await b.set("{nr3}n", "10");
    await assert.rejects(a.multi().incr("{nr3}n").exec(), WatchError);
    await a.watch("{nr3}n");
    assert.deepEqual(await a.multi().incr("{nr3}n").exec(), [11]);
    const got = new Promise((resolve) => sub.subscribe("{nr3}ch", (m, ch) => resolve([ch, m])));
    await new Promise((r) => setTimeout(r, 100));
    await b.publish("{nr3}ch", "hi");
    assert.deepEqual(await got, ["{nr3}ch", "hi"]);
    console.log("ok");
  } finally {
    a.destroy();
    b.destroy();
    sub.destroy();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
