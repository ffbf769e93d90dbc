"""redis-py (Debian's python3-redis) with its default options against the proxy: commands, a pipeline,
MULTI/EXEC, WATCH with a conflict made by a second client. Prints "ok" or exits non-zero."""
import sys

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
print("ok")
