"""What every devstack server shares: `with Server(...) as s:` starts it and always stops it."""

from __future__ import annotations

from typing import Self

__all__ = ["Service"]


class Service:
    """Start on enter, stop on exit; a start that fails half-way stops what it had started, so
    a failed fixture leaves no process behind."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
