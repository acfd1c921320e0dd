"""An in-memory DNS backend with the real interface, for controller and API tests."""

from __future__ import annotations

from handshake.errors import TemporaryError


class MemoryDns:
    def __init__(self) -> None:
        self.address: str | None = None
        self.sets: list[str] = []
        self.fail = False
        self.closed = False

    async def start(self) -> None:
        pass

    async def set_address(self, address: str) -> None:
        if self.fail:
            raise TemporaryError("backend down")
        self.sets.append(address)
        self.address = address

    async def get_address(self) -> str | None:
        if self.fail:
            raise TemporaryError("backend down")
        return self.address

    async def close(self) -> None:
        self.closed = True
