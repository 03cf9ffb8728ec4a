"""What a green run found that its state does not say, for ``greenery run``'s line per day: warnings, quarantine."""

from __future__ import annotations

from psycopg import sql

from greenery import audit, warehouse
from greenery.alerts.text import as_int, counted


def notes(dag_run) -> str:
    """`` (2 warnings, 3 rows quarantined: ...)`` from a green run's latest recorded validation; '' when clean (or
    not green: the lines after it say why).

    Review: a run that quarantined rows or failed warnings printed a bare "success"; only Slack or the Data quality
    view told. A record that cannot be read is said too: the line must not read as clean for want of it.
    """
    if dag_run.state != "success":
        return ""
    try:
        with warehouse.connect() as conn:
            row = conn.execute(
                sql.SQL("select summary from {} where run_id = %s order by validated_at desc limit 1").format(
                    audit.table("validation_runs")
                ),
                (dag_run.run_id,),
            ).fetchone()
    except Exception as exc:  # the run is green: its record may be unreadable (a permission), not its tables
        return f" (its checks' record could not be read: {type(exc).__name__})"
    if row is None:  # publish records every green run's validation: its absence is news, not a clean run
        return " (no validation is recorded for it)"
    summary = row[0]
    warnings = as_int(summary.get("failed_warning"))
    held = sum(as_int(n) for n in (summary.get("quarantined") or {}).values())
    found = [counted(warnings, "warning")] if warnings else []
    found += [f"{counted(held, 'row')} quarantined"] if held else []
    return f" ({', '.join(found)}: see the Data quality view)" if found else ""
