"""Table and column docs and owners: one YAML file per layer (include/sql/<layer>/_docs.yml) feeds the
COMMENTs on the built tables, the README's analyst section (marts) and who an alert mentions
(include/sql/_owners.yml)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from psycopg import sql

from greenery import config
from greenery.errors import RetryCannotFix

README_START = "<!-- mart-docs:start -->"
README_END = "<!-- mart-docs:end -->"


@cache
def load(sql_dir: Path | None = None) -> dict[str, dict]:
    """Every model's docs, keyed by model name, each with its ``layer``."""
    sql_dir = Path(sql_dir or config.get().sql_dir)
    docs: dict[str, dict] = {}
    for layer in config.LAYERS:
        path = sql_dir / layer / "_docs.yml"
        if not path.is_file():
            continue
        for name, doc in _entries(path).items():
            if doc.get("layer", layer) != layer:  # review: overwritten by the folder's, in silence
                raise DocsError(f"{path}: entry {name}: layer: the file's folder is its layer, {layer}")
            docs[name] = {**doc, "layer": layer}
    return docs


@cache
def owners(sql_dir: Path | None = None) -> dict[str, dict]:
    """The owners (include/sql/_owners.yml): name -> {name, slack}."""
    path = Path(sql_dir or config.get().sql_dir) / "_owners.yml"
    return _entries(path) if path.is_file() else {}


def _entries(path: Path) -> dict[str, dict]:
    """The file's top-level mapping of name -> mapping. Review: an unterminated quote ended `greenery docs` (and
    `greenery answers`) in yaml's traceback, an entry written as a string in "'str' object is not a mapping"."""
    import yaml  # an Airflow dependency; only needed when docs are applied or rendered

    # libyaml's loader where PyYAML has it (its wheels do): the same documents, errors at the same line and column
    # (in libyaml's words), a tenth of the CPU. Every model task reads these files for its comments: 24-30 ms of each
    # with PyYAML's own Python.
    text, loader = path.read_text(encoding="utf-8"), None
    try:
        loader = (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)(text)  # PyYAML's reads it here
        node = loader.get_single_node()  # parsed once: its nodes say where a key repeats, then the document
        found = (loader.construct_document(node) if node is not None else None) or {}
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        started = exc.context_mark if exc.context and exc.problem_mark else None  # an unterminated quote's opening
        since = f" ({exc.context} from line {started.line + 1}, column {started.column + 1})" if started else ""
        raise DocsError(f"{where}: not YAML: {exc.problem or exc.context}{since}") from None
    except yaml.YAMLError as exc:
        raise DocsError(f"{path}: not YAML: {' '.join(str(exc).split())}") from None
    finally:
        if loader is not None:
            loader.dispose()
    if not isinstance(found, dict):
        raise DocsError(f"{path}: expected a mapping of names to entries, got a {type(found).__name__}")
    if repeated := _repeated_key(node):
        key, line = repeated  # review: a model named twice lost its first entry, green and silent
        raise DocsError(f"{path}, line {line}: {key} is given twice (YAML keeps the last, dropping the other)")
    for name, entry in found.items():
        if not isinstance(entry, dict):
            got = "nothing" if entry is None else f"a {type(entry).__name__} ({str(entry)[:40]!r})"
            raise DocsError(f"{path}: entry {name}: expected a mapping of keys to values, got {got}")
    return found


def _repeated_key(node) -> tuple[str, int] | None:
    """The first key a mapping of the document repeats, with its line, at any depth."""
    pairs = getattr(node, "value", None)
    if not isinstance(pairs, list):
        return None
    seen = set()
    for item in pairs:
        key, value = item if isinstance(item, tuple) else (None, item)
        if key is not None and key.value in seen:
            return key.value, key.start_mark.line + 1
        seen.add(getattr(key, "value", None))
        if found := _repeated_key(value):
            return found
    return None


# What an entry may hold, and the type of each (review: columns written as a list failed every run of the model with
# an AttributeError blamed on its SQL, retried twice, 338 s).
ENTRY_KEYS = {"description": str, "owner": str, "columns": dict, "indicators": dict}
INDICATOR_KEYS = ("definition", "says")  # an indicator's: README's table, and the answers' sentence


def check(models: dict) -> None:
    """Every entry of the layers' _docs.yml names a model of its layer, holds what :data:`ENTRY_KEYS` allows, its
    columns text, its owner one of _owners.yml (review: an entry naming no model, or a misspelt owner, went unused in
    silence: the model lost its docs, its alerts their owner). Raises DocsError naming the file and entry."""
    folder = Path(config.get().sql_dir)
    known_owners = owners(folder)
    for name, doc in load(folder).items():
        where = f"{folder / doc['layer'] / '_docs.yml'}: entry {name}"
        if name not in models or models[name].layer != doc["layer"]:
            layer = f" (it is a {models[name].layer} model)" if name in models else ""
            raise DocsError(f"{where}: no {doc['layer']} model of that name{layer}")
        for key, value in doc.items():
            if key == "layer":  # load's own, from the file's folder
                continue
            if key not in ENTRY_KEYS:
                raise DocsError(f"{where}: {key}: no such key (an entry holds {', '.join(ENTRY_KEYS)})")
            if not isinstance(value, ENTRY_KEYS[key]):
                raise DocsError(f"{where}: {key}: expected {_KIND[ENTRY_KEYS[key]]}, got {_kind(value)}")
        for column, text in (doc.get("columns") or {}).items():
            if not isinstance(text, str):
                raise DocsError(f"{where}: column {column}: expected its meaning as text, got {_kind(text)}")
        for indicator, said in (doc.get("indicators") or {}).items():  # the README and the answers read both (review)
            if not isinstance(said, dict) or not all(isinstance(said.get(k), str) for k in INDICATOR_KEYS):
                raise DocsError(f"{where}: indicator {indicator}: expected {' and '.join(INDICATOR_KEYS)}, as text")
        if doc.get("owner") and doc["owner"] not in known_owners:
            raise DocsError(f"{where}: owner {doc['owner']!r} is not in _owners.yml ({', '.join(known_owners)})")


_KIND = {str: "text", dict: "a mapping (key: value lines)"}


def _kind(value: object) -> str:
    return "nothing" if value is None else _KIND.get(type(value)) or f"a {type(value).__name__}"


def owner_of(model: str) -> dict | None:
    """The owner of ``model`` as _owners.yml describes it (None when the model names none)."""
    key = (load().get(model) or {}).get("owner")
    return {"id": key, **owners().get(key, {})} if key else None


def apply_comments(cur, model_name: str, schema: str, table: str) -> None:
    """COMMENT ON the table and its documented columns (inside the build's transaction), where they differ.

    Only where they differ: a comment takes a lock that waits for autovacuum (1 s, until PostgreSQL cancels it),
    and an incremental table merged into by every run has its comments from its first publish.
    """
    doc = load().get(model_name)
    if not doc:
        return
    ident = sql.Identifier(schema, table)
    current = dict(
        cur.execute(
            "select a.attname, col_description(a.attrelid, a.attnum) from pg_attribute as a"
            " where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped"
            " union all select null, obj_description(%s::regclass, 'pg_class')",
            (f"{schema}.{table}",) * 2,
        ).fetchall()
    )
    unknown = [column for column in doc.get("columns") or {} if column not in current]
    if unknown:  # review: a misspelt key failed the build as the model's SQL error ("column ... does not exist")
        path = Path(config.get().sql_dir) / doc["layer"] / "_docs.yml"
        found = ", ".join(sorted(c for c in current if c))
        raise DocsError(f"{path}: {model_name}: documents column(s) {', '.join(unknown)} the model has not ({found})")
    wanted = doc.get("description", "")
    if current.get(None) != wanted:
        cur.execute(sql.SQL("comment on table {} is {}").format(ident, sql.Literal(wanted)))
    for column, text in (doc.get("columns") or {}).items():
        if current.get(column) != str(text):
            cur.execute(
                sql.SQL("comment on column {}.{} is {}").format(ident, sql.Identifier(column), sql.Literal(str(text)))
            )


def readme_section() -> str:
    marts = {name: doc for name, doc in load().items() if doc["layer"] == "marts"}
    if not marts:  # review: a wrong GREENERY_SQL_DIR rewrote the README without a single mart, and said "updated"
        raise DocsError(f"{Path(config.get().sql_dir) / 'marts' / '_docs.yml'}: no mart docs; nothing was written")
    lines = [README_START, "<!-- generated by `greenery docs --write-readme` from include/sql/marts/_docs.yml -->", ""]
    for name, doc in marts.items():
        lines += [f"#### `marts.{name}`", "", doc.get("description", ""), "", "| column | meaning |", "|---|---|"]
        lines += [f"| `{c}` | {_cell(t)} |" for c, t in (doc.get("columns") or {}).items()]
        lines.append("")
        # A mart with one row per indicator defines its rows too (repurchase_indicators).
        if doc.get("indicators"):
            lines += ["| indicator | definition |", "|---|---|"]
            lines += [f"| `{i}` | {_cell(d['definition'])} |" for i, d in doc["indicators"].items()]
            lines.append("")
    lines.append(README_END)
    return "\n".join(lines)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|")


class DocsError(ValueError, RetryCannotFix):
    """The docs cannot be rendered or written as asked; nothing was written."""


class ReadmeMarkersError(DocsError):
    """The README lacks the generated section's markers, or has them twice or out of order: nothing written."""


def update_readme(readme: Path) -> bool:
    """Rewrite the generated section of the README; return True when it changed."""
    text = readme.read_text(encoding="utf-8")
    for marker in (README_START, README_END):
        if text.count(marker) != 1:
            raise ReadmeMarkersError(
                f"{readme}: {marker} must appear once (found {text.count(marker)}); nothing was written"
            )
    start, end = text.index(README_START), text.index(README_END) + len(README_END)
    if end < start:
        raise ReadmeMarkersError(f"{readme}: {README_END} comes before {README_START}; nothing was written")
    new = text[:start] + readme_section() + text[end:]
    if new != text:
        readme.write_text(new, encoding="utf-8")
    return new != text
