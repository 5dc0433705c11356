"""A TCP relay on loopback between the agent and the hall server that a test can cut and restore.

Modes: ``pass`` forwards both ways; ``refuse`` closes every connection at once (the network is gone);
``lose_replies`` forwards the request to the server but drops the server's answer and closes the
connection (the server stored the upload, the agent never hears so: it must resend, and the server must
store it once). ``retarget`` points it at a restarted server on a new port while the agent keeps its URL.
"""

from __future__ import annotations

import contextlib
import socket
import threading


class Relay:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            if self.mode == "refuse":
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            mode = self.mode
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(upstream, client, mode == "lose_replies"), daemon=True
            ).start()

    def _pump(self, source: socket.socket, sink: socket.socket, drop: bool) -> None:
        try:
            while chunk := source.recv(65536):
                if drop or self.mode == "refuse":
                    break
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._open.discard(sock)

    def cut(self, mode: str = "refuse") -> None:
        """Break every open connection and treat new ones by ``mode`` ("refuse" or "lose_replies")."""
        self.mode = mode
        with self._lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def restore(self, target_port: int | None = None) -> None:
        if target_port is not None:
            self.target = (self.target[0], target_port)
        self.mode = "pass"

    def close(self) -> None:
        self._closed = True
        self.cut()
        self.listener.close()
