"""redis-py (Debian's python3-redis) with its default options against the proxy: commands, a pipeline,
MULTI/EXEC, WATCH with a conflict made by a second client, a blocking pop woken by another client, Pub/Sub
(channels, patterns), a Lua script, SCAN. Prints "ok" or exits non-zero."""
import sys
import threading
import time

import redis

host, port = sys.argv[1].split(":")
a = redis.Redis(host=host, port=int(port))
b = redis.Redis(host=host, port=int(port))
a.delete("{py}k", "{py}n")
assert a.set("{py}k", "v") is True
assert a.get("{py}k") == b"v"
p = a.pipeline(transaction=False)
p.incr("{py}n").incr("{py}n")
assert p.execute() == [1, 2]
p = a.pipeline(transaction=True)
p.incr("{py}n").get("{py}n")
assert p.execute() == [3, b"3"]
with a.pipeline() as p:
    p.watch("{py}n")
    b.set("{py}n", 10)
    p.multi()
    p.incr("{py}n")
    try:
        p.execute()
        raise AssertionError("EXEC ran although the watched key was touched")
    except redis.WatchError:
        pass


def bump(pipe):
    n = int(pipe.get("{py}n"))
    pipe.multi()
    pipe.set("{py}n", n + 1)


assert a.transaction(bump, "{py}n") == [True]
assert a.mget("{py}k", "nosuch", "{py}n") == [b"v", None, b"11"]

a.delete("{py}q")
threading.Timer(0.2, lambda: b.rpush("{py}q", "job")).start()
started = time.monotonic()
assert a.blpop("{py}q", timeout=5) == (b"{py}q", b"job")
assert time.monotonic() - started >= 0.15
assert a.brpop("{py}q", timeout=0.1) is None

ps = a.pubsub()
ps.subscribe("py:news")
ps.psubscribe("py:p*")
for kind in ("subscribe", "psubscribe"):
    m = ps.get_message(timeout=5)
    assert m["type"] == kind, m
assert b.publish("py:news", "hello") >= 0
assert b.publish("py:pat", "world") >= 0
got = []
while len(got) < 2:
    m = ps.get_message(timeout=5)
    assert m is not None, got
    got.append((m["type"], m["channel"], m["data"]))
assert got == [("message", b"py:news", b"hello"), ("pmessage", b"py:pat", b"world")], got
ps.close()

assert a.eval("return redis.call('incr', KEYS[1])", 1, "{py}n") == 12
assert set(a.scan_iter(match="{py}*")) >= {b"{py}k", b"{py}n"}
print("ok")
