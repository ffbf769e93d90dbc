"""Opens N idle client connections to HOST:PORT and holds them: bench/run.sh's memory probe.

    python3 bench/hold_conns.py HOST PORT N READY_FILE [noping | get KEY VALUE_LEN]

Each connection sends one PING and waits for the reply (so the server has accepted it and served a request), then
stays idle. With noping it sends nothing: held once connected (the server may accept it a moment later). With get
it sends 16 pipelined GETs of KEY (which holds VALUE_LEN bytes) and waits for the 16 replies: a client that did
some work before it went idle. At most WINDOW connections are being set up at a time, so the listen backlog never overflows. When all
are set up (or TIMEOUT seconds passed), writes "held failed" to READY_FILE and sleeps until SIGTERM/SIGINT.
Plain sockets and selectors only.
"""
import errno
import os
import resource
import selectors
import signal
import socket
import sys
import time

WINDOW = 200
TIMEOUT = 120.0


def main():
    host, port, n, ready = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    noping = sys.argv[5:] == ["noping"]
    ping, want = b"*1\r\n$4\r\nPING\r\n", None
    if sys.argv[5:6] == ["get"]:
        key, size = sys.argv[6].encode(), int(sys.argv[7])
        ping = b"*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n" % (len(key), key) * 16
        want = 16 * (len(b"$%d\r\n" % size) + size + 2)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 64:
        want = n + 64 if hard == resource.RLIM_INFINITY else min(n + 64, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    if soft < n + 16:
        print(f"hold_conns: open files limit {soft} allows only {soft - 16} connections", file=sys.stderr)
        n = soft - 16

    sel = selectors.DefaultSelector()
    held, failed, started, pending = [], 0, 0, 0
    deadline = time.monotonic() + TIMEOUT
    while len(held) + failed < n and time.monotonic() < deadline:
        while pending < WINDOW and started < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            if err not in (0, errno.EINPROGRESS):
                s.close()
                failed += 1
            else:
                sel.register(s, selectors.EVENT_WRITE, [b""])
                pending += 1
            started += 1
        for key, ev in sel.select(timeout=1.0):
            s, buf = key.fileobj, key.data
            if ev & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sel.unregister(s)
                    s.close()
                    failed, pending = failed + 1, pending - 1
                    continue
                if noping:
                    sel.unregister(s)
                    held.append(s)
                    pending -= 1
                    continue
                s.send(ping)
                sel.modify(s, selectors.EVENT_READ, buf)
                continue
            try:
                data = s.recv(65536)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()
                failed, pending = failed + 1, pending - 1
                continue
            buf[0] += data
            if want is not None and len(buf[0]) >= want or want is None and buf[0].endswith(b"\r\n"):
                # want is None: one line, +PONG or an error line
                sel.unregister(s)
                held.append(s)
                pending -= 1
    with open(ready + ".tmp", "w") as f:
        f.write(f"{len(held)} {n - len(held)}\n")
    os.rename(ready + ".tmp", ready)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
