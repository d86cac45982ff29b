"""What the fake servers share: serving their app on a local port."""

from __future__ import annotations

from typing import Self

from aiohttp import web


class LocalServer:
    """An aiohttp app (``make_app``) served on ``host:port`` for tests,
    benchmarks and ``--demo``; ``async with`` starts and stops it."""

    base_path = ""  # appended to the origin in ``base_url`` (e.g. "/v1")
    base_url: str | None = None
    _runner: web.AppRunner | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on ``host:port`` (0: any free port); returns the base URL."""
        self._runner = web.AppRunner(self.make_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}{self.base_path}"
        return self.base_url

    def open_connections(self) -> int:
        """Client connections open to the server right now."""
        server = self._runner.server if self._runner is not None else None
        return len(server.connections) if server is not None else 0

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
