"""Opens N idle TCP connections to 127.0.0.1:PORT, writes DONE_FILE, then holds them until killed."""
import socket
import sys
import time

port, n, done = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
conns = []
for i in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
# One round trip on the last connection shows the server has accepted them all.
conns[-1].sendall(b"*1\r\n$4\r\nPING\r\n")
conns[-1].recv(64)
open(done, "w").write(str(len(conns)))
while True:
    time.sleep(3600)
