"""A private PostgreSQL server from the ``pgserver`` wheel, for the demo, the CLI and the tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from greenery.warehouse import create_database


@dataclass
class EmbeddedPostgres:
    """A private PostgreSQL server: no Docker, no system packages; it listens on a unix socket."""

    data_dir: Path
    cleanup: str = "stop"

    def __post_init__(self) -> None:
        import pgserver  # a heavy import only needed when no warehouse is configured

        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir, cleanup_mode=self.cleanup)

    def url(self, database: str = "postgres") -> str:
        # pgserver listens on a unix socket in its data directory.
        return f"postgresql://postgres:@/{database}?host={self.data_dir}"

    def create_database(self, name: str) -> str:
        return create_database(self.url(), name)

    def stop(self) -> None:
        self._server.cleanup()
