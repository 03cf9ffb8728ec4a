"""The secrets every Airflow component of the Docker Compose stack shares, made once by its airflow-init.

Airflow's JWT secret signs the tokens of the UI, the REST API and the Execution API; its ``[api] secret_key`` signs
log requests. The compose file once defaulted both to a value written in it, on a port open to the network: anyone
could sign an admin token (review). Now each is the ``.env`` value when one is given (AIRFLOW_JWT_SECRET,
AIRFLOW_SECRET_KEY), else the one made at the first start and kept in the config volume; the components read the
file through Airflow's ``_CMD`` settings.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

# file in the config volume -> the .env variable that sets it
SECRETS = {"jwt_secret": "AIRFLOW_JWT_SECRET", "secret_key": "AIRFLOW_SECRET_KEY"}
# What .env.example held before (an .env copied from it keeps them: diff review), and the shortest secret taken.
KNOWN = ("change-me", "change-me-too")
SHORTEST = 32


class WeakSecretError(ValueError):
    """A secret .env gives is one anybody knows, or too short to withstand guessing."""


def write(directory: Path, environ: Mapping[str, str]) -> list[str]:
    """Write each secret file that ``environ`` sets or that does not exist yet (random), readable by its owner only;
    return what was written. A secret kept from an earlier start stays: tokens already given out stay valid."""
    written = []
    for variable in SECRETS.values():
        if (given := environ.get(variable, "")) and (given in KNOWN or len(given) < SHORTEST):
            raise WeakSecretError(
                f"{variable} in .env is {'a value written in this project' if given in KNOWN else 'too short'}:"
                f" anyone could sign Airflow's tokens with it; empty it (a random one is made and kept) or set"
                f' {SHORTEST} characters or more (python -c "import secrets; print(secrets.token_urlsafe(32))")'
            )
    for name, variable in SECRETS.items():
        path, given = directory / name, environ.get(variable, "")
        # A file short of a secret (an init stopped mid-write, a full disk) is made again: Airflow makes a key of
        # its own for an empty one, each component another, and their tokens did not match (diff review).
        short = path.exists() and len(path.read_text().strip()) < SHORTEST
        if given or short or not path.exists():
            written_to = path.with_name(f".{name}.new")
            written_to.unlink(missing_ok=True)
            written_to.touch(mode=0o600)
            written_to.chmod(0o600)
            written_to.write_text(given or secrets.token_urlsafe(32))
            os.replace(written_to, path)  # whole or not at all
            why = f"from {variable}" if given else "made at random" + (", the kept one being short" if short else "")
            written.append(f"{name} ({why})")
    return written


if __name__ == "__main__":
    try:
        made = write(Path(sys.argv[1]), os.environ)
    except WeakSecretError as weak:  # airflow-init fails: no component starts with it
        sys.exit(f"error: {weak}")
    print(f"Airflow's shared secrets: {', '.join(made) or 'kept from the last start'}")
