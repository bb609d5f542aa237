"""Bring files into tables: ``yws tables import`` and ``yws data generate``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc

from yws.contract.spec import Spec
from yws.storage import Storage, StorageError

FORMATS = ("csv", "parquet")


class FileImportError(StorageError, ValueError):
    """A file cannot be imported as it is; the message names the file and what is wrong."""


ImportMode = Literal["snapshot", "overwrite", "append"]
# What a one-column CSV header holding one of these most likely means.
_OTHER_DELIMITERS = {";": "semicolons", "\t": "tabs", "|": "pipes"}


def read_file(path: Path, fmt: str | None = None,
              untyped_ok: frozenset[str] = frozenset()) -> pa.Table:
    """A CSV or Parquet file as Arrow, checked (:func:`check_file`); the format comes from
    the suffix unless given."""
    if not path.is_file():
        raise StorageError(f"file {str(path)!r} does not exist")
    fmt = fmt or path.suffix.lower().lstrip(".")
    if fmt == "pq":
        fmt = "parquet"
    if fmt not in FORMATS:
        raise StorageError(
            f"cannot tell the format of {str(path)!r}: name it *.csv or *.parquet, or pass "
            f"--format ({', '.join(FORMATS)})"
        )
    try:
        if fmt == "csv":
            from pyarrow import csv

            # An empty field is a null (as pyarrow writes one), in text columns too.
            table = csv.read_csv(path, convert_options=csv.ConvertOptions(
                strings_can_be_null=True))
        else:
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        # A header that is not UTF-8 fails only when its names are read: read them here.
        table.schema.names  # noqa: B018
    except UnicodeDecodeError:  # a value that is not UTF-8 reads as binary instead
        raise FileImportError(
            f"{path}: the header is not UTF-8 text (latin-1?); save the file as UTF-8"
        ) from None
    except (pa.ArrowInvalid, OSError) as e:
        raise FileImportError(f"could not read {str(path)!r} as {fmt}: {_line(e)}") from e
    check_file(table, path, fmt, untyped_ok)
    return table


def _line(e: BaseException) -> str:
    return " ".join(str(e).split())


def check_file(table: pa.Table, path: Path, fmt: str,
               untyped_ok: frozenset[str] = frozenset()) -> None:
    """Refuse what a broken or misread file looks like once read: a one-column CSV whose
    header holds another delimiter, no rows, empty, duplicate or control-character column
    names, columns with no type (every value empty, unless the name is in ``untyped_ok``:
    a spec column that gets its type from the spec), bytes that are not UTF-8, NUL bytes."""
    names = table.schema.names
    if fmt == "csv" and len(names) == 1:
        found = [word for d, word in _OTHER_DELIMITERS.items() if d in names[0]]
        if found:
            raise FileImportError(
                f"{path}: one column named {names[0][:60]!r}: the file seems to be separated by "
                f"{found[0]}; yws reads comma-separated files"
            )
    if table.num_rows == 0:
        raise FileImportError(f"{path}: no rows (a header only, or an empty file): nothing to "
                              "import")
    blank = [i + 1 for i, n in enumerate(names) if not n.strip()]
    if blank:
        raise FileImportError(
            f"{path}: column(s) {', '.join(map(str, blank))} have no name in the header"
        )
    control = [n for n in names if any(ord(ch) < 32 for ch in n)]
    if control:
        raise FileImportError(
            f"{path}: column name {control[0]!r} holds a control character (a NUL byte?)"
        )
    seen: dict[str, str] = {}
    for n in names:  # Delta and Unity Catalog compare column names case-insensitively
        if n.lower() in seen:
            raise FileImportError(f"{path}: column {n!r} appears twice"
                                  + (f" (as {seen[n.lower()]!r})" if seen[n.lower()] != n
                                     else ""))
        seen[n.lower()] = n
    for field in table.schema:
        if pa.types.is_null(field.type) and field.name.lower() not in untyped_ok:
            raise FileImportError(
                f"{path}: column {field.name!r} is empty in every row, so its type is unknown"
            )
        if fmt == "csv" and (pa.types.is_binary(field.type)
                             or pa.types.is_large_binary(field.type)):
            raise FileImportError(
                f"{path}: column {field.name!r} holds text that is not UTF-8 (latin-1?); save "
                "the file as UTF-8"
            )
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            if pc.any(pc.match_substring(table[field.name], "\x00")).as_py():
                raise FileImportError(f"{path}: column {field.name!r} holds NUL bytes")


def conform_to_spec(table: pa.Table, spec: Spec, path: Path, name: str,
                    existing: pa.Schema | None) -> pa.Table:
    """The file's columns cast to the types of the table ``name`` the spec governs.

    A column keeps the type the existing table gives it; a new table takes the spec's types.
    Missing spec columns, columns the spec does not know and values that do not cast are
    refused, each named.
    """
    from yws.contract.quality import FeatureSchemaError, check_arrow_schema

    wanted = [spec.entity_key, spec.as_of_column, spec.label, *spec.feature_names]
    have = {n.lower(): n for n in table.schema.names}
    missing = [c for c in wanted if c.lower() not in have]
    if missing:
        raise FileImportError(
            f"{path}: missing column(s) the spec ({spec.source}) needs for {name}: "
            f"{', '.join(missing)}"
        )
    extra = sorted(set(have) - {c.lower() for c in wanted})
    if extra:
        raise FileImportError(
            f"{path}: column(s) {', '.join(have[c] for c in extra)} are not in the spec "
            f"({spec.source}) that governs {name}; drop them or add them to the spec"
        )
    defaults = {spec.as_of_column: pa.date32(), spec.label: pa.int32()}
    for f in spec.features:
        defaults[f.name] = f.kind.arrow()
    old = {f.name: f for f in existing} if existing is not None else {}
    fields, columns = [], []
    for col in wanted:
        data = table[have[col.lower()]]
        if col in old:
            field = old[col]
        elif col in defaults:
            field = pa.field(col, defaults[col], nullable=col != spec.as_of_column)
        else:  # the entity key: string or integer, as the file has it
            field = pa.field(col, data.type, nullable=False)
        columns.append(_cast(data, field, path))
        fields.append(field)
    out = pa.Table.from_arrays(columns, schema=pa.schema(fields))
    try:
        check_arrow_schema(out.schema, spec, f"{path}", need_label=True)
    except FeatureSchemaError as e:
        raise FileImportError(str(e)) from None
    return out


def _cast(data: pa.ChunkedArray, field: pa.Field, path: Path) -> pa.ChunkedArray:
    try:
        out = data if data.type == field.type else pc.cast(data, field.type, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise FileImportError(
            f"{path}: column {field.name!r} ({data.type}) does not convert to {field.type}: "
            f"{_line(e)}"
        ) from None
    if not field.nullable and out.null_count:
        raise FileImportError(
            f"{path}: column {field.name!r} is empty in {out.null_count} row(s); it may not be"
        )
    return out


def _conform_to_table(table: pa.Table, existing: pa.Schema, path: Path) -> pa.Table:
    """The file cast to the existing table's types when it has the same columns (a CSV reads
    whole numbers as int64 where the table holds doubles); otherwise as it is."""
    if {n.lower() for n in table.schema.names} != {n.lower() for n in existing.names}:
        return table
    have = {n.lower(): n for n in table.schema.names}
    return pa.Table.from_arrays([_cast(table[have[f.name.lower()]], f, path) for f in existing],
                                schema=existing)


def _differences(old: pa.Schema, new: pa.Schema) -> str:
    was = {f.name: f.type for f in old}
    now = {f.name: f.type for f in new}
    parts = []
    if gone := [n for n in was if n not in now]:
        parts.append(f"drops {', '.join(gone)}")
    if added := [n for n in now if n not in was]:
        parts.append(f"adds {', '.join(added)}")
    if changed := [f"{n} {was[n]} -> {now[n]}" for n in now if n in was and was[n] != now[n]]:
        parts.append(f"changes {', '.join(changed)}")
    return "; ".join(parts)


def import_file(
    storage: Storage, path: Path, name: str, *, mode: ImportMode | None = None,
    fmt: str | None = None, spec: Spec | None = None, replace_schema: bool = False,
) -> int:
    """Load a file into the Delta table ``name``; returns the number of rows written.

    ``spec`` is given when it governs ``name`` (the features table): the file must then hold
    the spec's columns, cast to the table's types, and the default mode is ``snapshot``,
    which replaces the rows of the file's one as-of date as ``yws data generate`` does. Any
    other table defaults to ``overwrite``. Overwriting a table with another schema needs
    ``replace_schema``; an append or a snapshot never changes the schema. Every check runs
    before anything is written.
    """
    mode = mode or default_mode(spec)
    if mode == "snapshot" and spec is None:
        raise FileImportError(
            f"--mode snapshot replaces one as-of date of the features table; {name} is not it: "
            "use --mode overwrite or append"
        )
    untyped_ok = frozenset(
        n.lower() for n in ([spec.label, *spec.feature_names] if spec is not None else [])
    )
    table = read_file(path, fmt, untyped_ok)
    existing = storage.read_arrow(name, limit=0).schema if storage.exists(name) else None
    if spec is not None:
        # --replace-schema: the spec's types, not those of the table being replaced
        table = conform_to_spec(table, spec, path, name, None if replace_schema else existing)
    elif existing is not None:
        table = _conform_to_table(table, existing, path)
    if existing is not None and not _same_schema(existing, table.schema):
        what = (f"{path} does not match the schema of {name} "
                f"(it {_differences(existing, table.schema)})")
        if mode != "overwrite":
            raise FileImportError(f"{what}: --mode {mode} keeps the schema; to replace the table "
                                  "and its schema, pass --mode overwrite --replace-schema")
        if not replace_schema:
            raise FileImportError(f"{what}: pass --replace-schema to replace the table and its "
                                  "schema")
    if mode == "snapshot":
        assert spec is not None
        days = pc.unique(table[spec.as_of_column]).to_pylist()
        if len(days) != 1 or days[0] is None:
            raise FileImportError(
                f"{path}: holds {len(days)} {spec.as_of_column} values ({_dates(days)}); a "
                f"snapshot import replaces one date: split the file, or pass --mode overwrite "
                f"to replace all of {name}"
            )
        return write_snapshot(storage, table, name, spec.as_of_column, days[0])
    return storage.write(table, name, mode=mode)


def default_mode(spec: Spec | None) -> ImportMode:
    """``snapshot`` for the table a spec governs, ``overwrite`` for any other."""
    return "snapshot" if spec is not None else "overwrite"


def _same_schema(a: pa.Schema, b: pa.Schema) -> bool:
    return {f.name: f.type for f in a} == {f.name: f.type for f in b}


def _dates(days: list[object]) -> str:
    shown = ", ".join(map(str, sorted(days, key=str)[:3]))
    return shown + (", ..." if len(days) > 3 else "")


def write_snapshot(storage: Storage, table: pa.Table, name: str, as_of_column: str,
                   as_of: dt.date) -> int:
    """Replace the rows of one as-of date (idempotent: generating a date twice keeps one copy)."""
    return storage.write(table, name, mode="overwrite", replace_where=(as_of_column, as_of))
