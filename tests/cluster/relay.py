"""A TCP relay on 127.0.0.1 between one node and its NATS server: the test takes that node's NATS away while the
rest of the cluster keeps it.

``freeze()`` hangs the link (bytes are dropped both ways, connections stay open: the node notices nothing until its
own timeouts); ``cut()`` closes every relayed connection and refuses new ones until ``restore()``; ``close()`` ends
the relay."""

from __future__ import annotations

import socket
import threading

__all__ = ["NatsRelay"]


def _shut(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class NatsRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.frozen = threading.Event()
        self.cut_off = False
        self.open: list[socket.socket] = []
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"nats://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut_off:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                if not self.frozen.is_set():
                    dst.sendall(data)
        except OSError:
            pass
        if not self.frozen.is_set():  # a frozen link stays open: the peer must not see a close
            _shut(src)
            _shut(dst)

    def freeze(self) -> None:
        self.frozen.set()

    def cut(self) -> None:
        self.cut_off = True
        with self.lock:
            conns, self.open = self.open, []
        for s in conns:
            _shut(s)
            s.close()

    def restore(self) -> None:
        self.cut_off = False

    def close(self) -> None:
        self.frozen.set()
        self.cut()
        self.listener.close()
