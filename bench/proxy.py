"""A TCP proxy for HTTP that makes a local store behave like a distant or failing one.

Each request waits ``delay_s`` before it is forwarded (a round trip to a real object store
takes 20-50 ms, the local one well under 1 ms). ``mode`` changes what the proxy does with the
next requests: ``forward`` (the default), ``503`` (answer every request as an overloaded S3
does, without forwarding it) or ``refuse`` (close each new connection at once).

In a thread of this process (tests)::

    with Proxy("127.0.0.1", 8333, delay_s=0.03) as proxy:
        url = proxy.url  # http://127.0.0.1:PORT

On its own (benchmarks, so that it does not compete for this process's GIL)::

    python -m bench.proxy --upstream 127.0.0.1:8333 --delay-ms 30   # prints its URL
"""

import argparse
import asyncio
import contextlib
import sys
import threading

SLOW_DOWN = (
    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nConnection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)


class Proxy:
    """Forwards 127.0.0.1:``port`` to ``upstream_host``:``upstream_port``."""

    def __init__(self, upstream_host, upstream_port, delay_s=0.0, port=0):
        self.upstream = (upstream_host, int(upstream_port))
        self.delay_s = delay_s
        self.mode = "forward"
        self.requests = 0
        self._port = port
        self._loop = None
        self._server = None
        self._thread = None
        self._ready = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def port(self):
        return self._server.sockets[0].getsockname()[1]

    async def start_server(self):
        self._server = await asyncio.start_server(
            self._connection, "127.0.0.1", self._port, backlog=1024
        )
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
        if self.mode == "refuse":
            client_writer.close()
            return
        if self.mode == "503":
            await self._slow_down(client_reader, client_writer)
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_writer.close()
            return
        # A request starts when the client writes after the store answered (or first).
        between_requests = [True]
        await asyncio.gather(
            self._pipe(client_reader, upstream_writer, between_requests, requests=True),
            self._pipe(upstream_reader, client_writer, between_requests, requests=False),
        )

    async def _pipe(self, reader, writer, between_requests, requests):
        try:
            while data := await reader.read(65536):
                if requests and between_requests[0]:
                    between_requests[0] = False
                    self.requests += 1
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                elif not requests:
                    between_requests[0] = True
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _slow_down(self, reader, writer):
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            writer.write(SLOW_DOWN % (len(SLOW_DOWN_BODY), SLOW_DOWN_BODY))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
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
