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


def write(directory: Path, environ: Mapping[str, str]) -> list[str]:
    """Write each secret file that ``environ`` sets or that does not exist yet (random), readable by its owner only;
    return what was written. A secret kept from an earlier start stays: tokens already given out stay valid."""
    written = []
    for name, variable in SECRETS.items():
        path, given = directory / name, environ.get(variable, "")
        if given or not path.exists():
            path.touch(mode=0o600)
            path.chmod(0o600)
            path.write_text(given or secrets.token_urlsafe(32))
            written.append(f"{name} ({'from ' + variable if given else 'made at random'})")
    return written


if __name__ == "__main__":
    made = write(Path(sys.argv[1]), os.environ)
    print(f"Airflow's shared secrets: {', '.join(made) or 'kept from the last start'}")
