"""What the marts' Asset URIs (postgres://<authority>/<database>/marts/<table>) can carry unescaped.

Airflow checks an Asset's URI when it parses the DAG, where a failure is an import error: config.py refuses a setting
that would break it first, by these rules (tests/test_dag_integrity.py holds them to Airflow's).
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

# host[:port], and the database as one path segment.
AUTHORITY = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::([0-9]{1,5}))?")
DATABASE = re.compile(r"[A-Za-z0-9._~-]+")


def is_authority(text: str) -> bool:
    """Review: '[10.0.0.7]:5432' and '[:]' pass the pattern: the URL parser of Airflow's Asset check reads them."""
    found = AUTHORITY.fullmatch(text)
    try:
        urllib.parse.urlsplit(f"postgres://{text}/").port  # noqa: B018 - read for its ValueError
        if found and text.startswith("["):
            ipaddress.IPv6Address(text[1 : text.index("]")])
    except ValueError:
        return False
    return bool(found) and (found[1] is None or 1 <= int(found[1]) <= 65535)
