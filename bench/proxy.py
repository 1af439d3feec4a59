"""A TCP proxy for HTTP that makes a local store behave like a distant or failing one.

Each request waits ``delay_s`` before it is forwarded (a round trip to a real object store
takes 20-50 ms, the local one well under 1 ms). ``mode`` changes what the proxy does with the
next requests: ``forward`` (the default), ``503`` (answer each request, on open connections
too, as an overloaded S3 does, without forwarding it), ``403`` (likewise, as S3 refusing the
caller) or ``refuse`` (stop listening: new
connections are refused by the kernel, open ones closed). (A PUT that waits for
``100 Continue`` is delayed twice.)

In a thread of this process (tests)::

    with Proxy("127.0.0.1", 8333, delay_s=0.03) as proxy:
        url = proxy.url  # http://127.0.0.1:PORT

On its own (benchmarks, so that it does not compete for this process's GIL)::

    python -m bench.proxy --upstream 127.0.0.1:8333 --delay-ms 30   # prints its URL
"""

import argparse
import asyncio
import collections
import contextlib
import sys
import threading

ANSWER = (
    b"HTTP/1.1 %s\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
# What S3 answers when it is overloaded, and when it refuses the caller.
ERRORS = {
    "503": (b"503 Slow Down", b"SlowDown", b"Please reduce your request rate."),
    "403": (b"403 Forbidden", b"AccessDenied", b"Access Denied"),
}


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_host, upstream_port, delay_s=0.0, port=0):
        self.upstream = (upstream_host, int(upstream_port))
        self.delay_s = delay_s
        self._mode = "forward"
        self.requests = 0
        self.heads = collections.deque(maxlen=1000)  # the last requests' heads, for tests
        self._writers = set()
        self._port = port
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()

    @property
    def mode(self):
        return self._mode

    @mode.setter
    def mode(self, value):
        assert value in ("forward", "refuse", *ERRORS), value
        asyncio.run_coroutine_threadsafe(self._set_mode(value), self._loop).result(10)

    async def _set_mode(self, value):
        if value == "refuse" and self._mode != "refuse":
            self._server.close()
            for writer in list(self._writers):
                writer.close()
        elif value != "refuse" and self._mode == "refuse":
            self._server = await asyncio.start_server(
                self._connection, "127.0.0.1", self._port, backlog=1024
            )
        self._mode = value

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self):
        return self._port

    async def start_server(self):
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self._port, backlog=1024
        )
        self._port = self._server.sockets[0].getsockname()[1]  # kept for a restart
        return self._server

    def __enter__(self):
        self._thread = threading.Thread(target=self._serve, name="proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc):
        if self._loop:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        return False

    async def _shutdown(self):
        self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _serve(self):
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self.start_server())
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _connection(self, client_reader, client_writer):
        if self._mode in ERRORS:
            with contextlib.suppress(asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                await client_reader.readuntil(b"\r\n\r\n")  # the request's head, then the answer
            await self._slow_down(client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        self._writers.add(client_writer)
        # A request starts when the client writes after the store answered (or first).
        between_requests = [True]
        try:
            await asyncio.gather(
                self._pipe(client_reader, upstream_writer, between_requests, client_writer),
                self._pipe(upstream_reader, client_writer, between_requests, None),
            )
        finally:
            self._writers.discard(client_writer)

    async def _pipe(self, reader, writer, between_requests, client_writer):
        """Copies one direction; ``client_writer`` is given for the requests' direction."""
        requests = client_writer is not None
        try:
            while data := await reader.read(65536):
                if requests and between_requests[0]:
                    between_requests[0] = False
                    self.requests += 1
                    self.heads.append(data.split(b"\r\n\r\n", 1)[0].decode("latin-1"))
                    if self._mode in ERRORS:  # switched while this connection was open
                        await self._slow_down(client_writer, counted=True)
                        break
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                elif not requests:
                    between_requests[0] = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError, asyncio.CancelledError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _slow_down(self, writer, counted=False):
        """Answers the mode's error and closes the connection (the request is not read whole:
        the client sees the answer and opens a new connection for its retry)."""
        if not counted:
            self.requests += 1
        status, code, message = ERRORS[self._mode]
        body = (
            b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
            b"<Message>%s</Message></Error>" % (code, message)
        )
        try:
            writer.write(ANSWER % (status, len(body), body))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="HOST:PORT to forward to")
    parser.add_argument("--delay-ms", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    host, port = args.upstream.rsplit(":", 1)
    proxy = Proxy(host, port, delay_s=args.delay_ms / 1000, port=args.port)

    async def serve():
        server = await proxy.start_server()
        print(proxy.url, flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
