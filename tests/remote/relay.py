"""A loopback TCP relay in front of a real server, that can cut every connection at once."""

from __future__ import annotations

import socket
import threading


class Relay:
    def __init__(self, port: int, record: bool = False) -> None:
        self.target = ("127.0.0.1", port)
        self.record = record
        self.sent = bytearray()  # what the clients sent the server (when ``record``)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        self.connections = self.cuts = 0
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.connections += 1
                self.sockets += [client, upstream]
            for a, b, keep in ((client, upstream, self.record), (upstream, client, False)):
                threading.Thread(target=self._pipe, args=(a, b, keep), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, keep: bool = False) -> None:
        try:
            while data := src.recv(65536):
                if keep:
                    with self.lock:
                        self.sent += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """Reset every open connection (new ones are relayed again)."""
        with self.lock:
            sockets, self.sockets = self.sockets, []
            self.cuts += 1
        for s in sockets:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.listener.close()
        self.cut()
