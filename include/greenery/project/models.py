"""Discover the SQL models under include/sql and derive their dependency graph (no database, no rendering).

A model is one ``.sql`` file holding one ``select``. Like dbt, a model names the tables it reads with
``{{ ref('model') }}`` and ``{{ source('table') }}`` and declares how it is stored with
``{{ config(...) }}``. The graph is read from the Jinja syntax tree, without rendering and without a
database, so the DAG file can call :func:`discover` at parse time.
"""

from __future__ import annotations

import copy
import difflib
import functools
import graphlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import pairwise
from pathlib import Path

import jinja2
from jinja2 import nodes

from greenery import config
from greenery.errors import RetryCannotFix
from greenery.sources.schema import RAW_TABLES

MATERIALIZATIONS = ("table", "daily_partition", "incremental", "snapshot")
# What config() takes (review: materialised='incremental' built a whole table each day, green, without a word).
CONFIG_KEYS = (
    "materialized", "unique_key", "incremental_column", "lookback_days", "partition_by", "check_cols", "quarantine",
    "column_types", "indexes", "full_build_settings",
)  # fmt: skip
# An incremental model recomputes the rows at or after the run's day minus this many days (late data).
DEFAULT_LOOKBACK_DAYS = 3
# A PostgreSQL setting's name (enable_indexscan, or an extension's such as pg_trgm.similarity_threshold).
SETTING_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


class ModelDefinitionError(ValueError, RetryCannotFix):
    """A model file cannot be understood (bad ref, bad config, cycle...)."""


@dataclass(frozen=True)
class Model:
    name: str
    layer: str
    path: Path
    template: str
    refs: tuple[str, ...]
    sources: tuple[str, ...]
    config: Mapping[str, object] = field(default_factory=dict)
    ref_lines: Mapping[str, int] = field(default_factory=dict)  # each ref's first line in the file, as parsed

    @property
    def materialized(self) -> str:
        return str(self.config.get("materialized", "table"))

    @property
    def unique_key(self) -> tuple[str, ...]:
        key = self.config.get("unique_key", ())
        return (key,) if isinstance(key, str) else tuple(key)

    @property
    def partition_by(self) -> str | None:
        value = self.config.get("partition_by")
        return str(value) if value else None

    @property
    def relation(self) -> str:
        return f"{self.layer}.{self.name}"

    @property
    def incremental_column(self) -> str | None:
        value = self.config.get("incremental_column")
        return str(value) if value else None

    @property
    def lookback_days(self) -> int:
        return int(self.config.get("lookback_days", DEFAULT_LOOKBACK_DAYS))

    @property
    def table_key(self) -> tuple[str, ...]:
        """What identifies a row of the table: the key, and for a snapshot the version's start too."""
        return (*self.unique_key, "valid_from") if self.materialized == "snapshot" else self.unique_key

    @property
    def check_cols(self) -> tuple[str, ...]:
        """The columns whose change makes a new version of a snapshot's row (config(check_cols=[...]))."""
        return tuple(self.config.get("check_cols") or ())

    @property
    def column_types(self) -> dict[str, str]:
        """Types the kept rows of a quarantining model are cast to (config(column_types={...}))."""
        return dict(self.config.get("column_types") or {})

    @property
    def indexes(self) -> tuple[tuple[str, ...], ...]:
        """Column lists to index once the table is built (config(indexes=[...]))."""
        return tuple((cols,) if isinstance(cols, str) else tuple(cols) for cols in self.config.get("indexes", ()))

    @property
    def full_build_settings(self) -> dict[str, str]:
        """PostgreSQL settings for the model's full builds only (config(full_build_settings={...})).

        Set for the build's transaction (``set_config(name, value, true)``), never for an incremental run.
        """
        return dict(self.config.get("full_build_settings") or {})


# SQL, not HTML: escaping would corrupt it, and the templates are the repo's own files.
ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)  # noqa: S701


def _const(node: nodes.Node, path: Path, what: str) -> object:
    try:
        return node.as_const()
    except nodes.Impossible as exc:
        raise ModelDefinitionError(f"{path}: {what} arguments must be literals") from exc


# A model's name is its table's, written unquoted in SQL (``ref``), so PostgreSQL's unquoted identifiers only (review:
# FactPromoUsage.sql built a table it then could not find); each layer but marts has its prefix (dbt's jaffle-shop).
NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PREFIXES = {"staging": "stg_", "snapshots": "snap_", "intermediate": "int_"}
# The DAG's own task ids and its task groups' (a model's task id is its name: review, a marts/publish.sql took the id
# "publish", Airflow renamed the real task publish__1 in silence and the alerts read the model's state as publish's;
# a marts/marts.sql made the DAG an import error). tests/test_dag_integrity.py holds this to the DAG.
RESERVED = ("check_source_freshness", "prepare_build", "validate", "publish", "alert_slack", "state_of_the_data")


def _check_name(path: Path, layer: str) -> None:
    name, prefix = path.stem, PREFIXES.get(layer, "")
    if not NAME.fullmatch(name):
        raise ModelDefinitionError(
            f"{path}: model name {name!r}: lowercase letters, digits and _ only, at most 63, not starting with a digit"
            " (it is the table's name, unquoted in SQL)"
        )
    if not name.startswith(prefix):
        raise ModelDefinitionError(f"{path}: a model in {layer}/ is named {prefix}<name>, got {name!r}")
    if name in RESERVED or name in config.LAYERS:
        raise ModelDefinitionError(
            f"{path}: model name {name!r} is the DAG's own (its tasks {', '.join(RESERVED)} and its task groups"
            f" {', '.join(config.LAYERS)}): a model's task id is its name; choose another"
        )


def _parse(path: Path, layer: str) -> Model:
    _check_name(path, layer)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:  # review: either left the DAG an import error that paged nobody
        raise ModelDefinitionError(f"{path}: cannot be read as UTF-8 text: {exc}") from exc
    model = _model(path, layer, text)
    # Each caller's own config (a dict, which a frozen dataclass does not freeze): none leaks into the cache.
    return replace(model, config=copy.deepcopy(model.config))


@functools.lru_cache(maxsize=512)
def _model(path: Path, layer: str, template: str) -> Model:
    """The model of ``template``, parsed once per text: parsing the 33 templates took 20 ms, and the tasks of a run
    in one process discover the models again (5 times in a ``dag.test`` run; the tests hundreds of times: 7 s of the
    workers' samples in a ``make test``), now 1.2 ms. An edited file is a new text, parsed anew."""
    try:
        tree = ENV.parse(template)
    except jinja2.TemplateSyntaxError as exc:
        raise ModelDefinitionError(f"{path}:{exc.lineno}: {exc.message}") from exc
    refs: list[str] = []
    ref_lines: dict[str, int] = {}
    sources: list[str] = []
    config: dict[str, object] = {}
    for call in tree.find_all(nodes.Call):
        if not isinstance(call.node, nodes.Name):
            continue
        if call.node.name in ("ref", "source") and (len(call.args) != 1 or call.kwargs):
            raise ModelDefinitionError(
                f"{path}:{call.lineno}: {call.node.name}() takes one name, as {call.node.name}('x')"
            )
        if call.node.name == "ref":
            refs.append(str(_const(call.args[0], path, "ref()")))
            ref_lines.setdefault(refs[-1], call.lineno)
        elif call.node.name == "source":
            sources.append(str(_const(call.args[0], path, "source()")))
        elif call.node.name == "config":
            for kw in call.kwargs:
                if kw.key not in CONFIG_KEYS:
                    close = difflib.get_close_matches(kw.key, CONFIG_KEYS, n=1)
                    hint = f"did you mean {close[0]!r}?" if close else f"config() takes {', '.join(CONFIG_KEYS)}"
                    raise ModelDefinitionError(f"{path}:{kw.lineno}: config({kw.key}=...) is no setting; {hint}")
                config[kw.key] = _const(kw.value, path, "config()")
    materialized = config.get("materialized", "table")
    if materialized not in MATERIALIZATIONS:
        raise ModelDefinitionError(f"{path}: materialized={materialized!r}, expected one of {MATERIALIZATIONS}")
    if materialized == "daily_partition" and not config.get("partition_by"):
        raise ModelDefinitionError(f"{path}: a daily_partition model needs config(partition_by=...)")
    if materialized != "daily_partition" and "partition_by" in config:  # developer's trial: ignored in silence
        raise ModelDefinitionError(f"{path}: partition_by is for materialized='daily_partition', not {materialized!r}")
    if materialized == "incremental":
        if not config.get("unique_key") or not config.get("incremental_column"):
            raise ModelDefinitionError(
                f"{path}: an incremental model needs config(unique_key=..., incremental_column=...)"
            )
        lookback = config.get("lookback_days", DEFAULT_LOOKBACK_DAYS)
        if not isinstance(lookback, int) or isinstance(lookback, bool) or lookback < 0:
            raise ModelDefinitionError(f"{path}: lookback_days={lookback!r}, expected a whole number >= 0")
    if materialized == "snapshot" and (
        not config.get("unique_key")
        or not isinstance(config.get("check_cols"), list | tuple)
        or not config.get("check_cols")
    ):
        raise ModelDefinitionError(f"{path}: a snapshot model needs config(unique_key=..., check_cols=[...])")
    column_types = config.get("column_types", {})
    if column_types and (
        not config.get("quarantine")
        or not isinstance(column_types, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in column_types.items())
    ):
        raise ModelDefinitionError(
            f"{path}: column_types={column_types!r}: a dict of column -> SQL type, on a quarantine=true model"
        )
    indexes = config.get("indexes", ())
    if not isinstance(indexes, list | tuple) or not all(
        isinstance(i, str) or (isinstance(i, list | tuple) and i and all(isinstance(c, str) for c in i))
        for i in indexes
    ):
        raise ModelDefinitionError(f"{path}: indexes={indexes!r}, expected a list of column names or column lists")
    settings = config.get("full_build_settings", {})
    if not isinstance(settings, dict) or not all(
        isinstance(k, str) and SETTING_NAME.fullmatch(k) and isinstance(v, str) for k, v in settings.items()
    ):
        raise ModelDefinitionError(
            f"{path}: full_build_settings={settings!r}, expected a dict of PostgreSQL setting name -> value (text)"
        )
    return Model(
        name=path.stem,
        layer=layer,
        path=path,
        template=template,
        refs=tuple(dict.fromkeys(refs)),
        ref_lines=ref_lines,
        sources=tuple(dict.fromkeys(sources)),
        config=config,
    )


def discover(sql_dir: Path | None = None) -> dict[str, Model]:
    """All models, keyed by name, in an order where every model comes after the models it reads."""
    sql_dir = Path(sql_dir or config.get().sql_dir)
    found: dict[str, Model] = {}
    for layer in config.LAYERS:
        for path in sorted((sql_dir / layer).glob("*.sql")):
            model = _parse(path, layer)
            if model.name in found:
                raise ModelDefinitionError(f"{path}: model name {model.name!r} also in {found[model.name].path}")
            found[model.name] = model
    if not found:
        raise ModelDefinitionError(f"no models found under {sql_dir}")
    for path in sorted(sql_dir.rglob("*")):  # review: marts/sub/x.sql, mart/x.sql and x.SQL were never built, silently
        placed = path.suffix == ".sql" and path.parent.parent == sql_dir and path.parent.name in config.LAYERS
        hidden = any(part.startswith(".") for part in path.relative_to(sql_dir).parts)  # .ipynb_checkpoints (review)
        if path.suffix.lower() == ".sql" and not placed and not hidden:
            raise ModelDefinitionError(
                f"{path}: not a model file: a model is <layer>/<name>.sql under {sql_dir}, a layer one of"
                f" {', '.join(config.LAYERS)}"
            )
    for model in found.values():
        for table in model.sources:  # review: source('promo') was built, failed on a missing relation, and retried
            if table not in RAW_TABLES:
                close = difflib.get_close_matches(table, RAW_TABLES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f" (raw has {', '.join(RAW_TABLES)})"
                raise ModelDefinitionError(f"{model.path}: source({table!r}) names no raw table{hint}")
        for ref in model.refs:
            if ref not in found:
                close = difflib.get_close_matches(ref, found, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise ModelDefinitionError(f"{model.path}{_line_of(model, ref)}: ref({ref!r}) names no model{hint}")
            if config.LAYERS.index(found[ref].layer) > config.LAYERS.index(model.layer):
                raise ModelDefinitionError(f"{model.path}: reads {ref!r} from a later layer ({found[ref].layer})")
    sorter = graphlib.TopologicalSorter({m.name: m.refs for m in found.values()})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = exc.args[1]  # each model read by the next: name where each reads the one before
        reads = ", ".join(f"{b} reads {a} at {found[b].path}{_line_of(found[b], a)}" for a, b in pairwise(cycle))
        raise ModelDefinitionError(f"models form a cycle: {reads}") from exc
    return {name: found[name] for name in order}


def _line_of(model: Model, ref: str) -> str:
    """ ":N", the line of ``model``'s file where it first reads ``ref``, as the parser found it ("" if unknown)."""
    return f":{model.ref_lines[ref]}" if ref in model.ref_lines else ""


def ancestors(models: Mapping[str, Model]) -> dict[str, set[str]]:
    """Every model's transitive refs (``models`` is in dependency order, as :func:`discover` gives them)."""
    found: dict[str, set[str]] = {}
    for name, model in models.items():
        found[name] = set()
        for ref in model.refs:
            found[name] |= {ref} | found.get(ref, set())
    return found
