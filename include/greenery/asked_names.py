"""A mapping that remembers which names were asked of it: how config lists the settings it reads, in one place."""

from __future__ import annotations

from collections.abc import Mapping


class AskedNames(Mapping):
    """``env``, remembering each name asked for (``names``)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env, self.names = env, set()

    def __getitem__(self, name: str) -> str:
        self.names.add(name)
        return self.env[name]

    def get(self, name: str, default=None):
        self.names.add(name)
        return self.env.get(name, default)

    def __iter__(self):
        return iter(self.env)

    def __len__(self) -> int:
        return len(self.env)
