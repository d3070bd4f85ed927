"""The settings reference (`docs/settings.md`) and the example settings file
(`config/settings.example.toml`), both generated from `router.settings.Settings`: its
fields, defaults, bounds and docstrings are the one source of what a setting is.

`python -m router.settings_doc [ROOT]` writes both under ROOT (default: the current
directory, the repository's root); tests/test_settings_doc.py fails when the committed
files differ from what this module generates.
"""

from __future__ import annotations

import json
import sys
import textwrap
import typing
from dataclasses import dataclass
from enum import Enum
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from router.settings import Settings

REFERENCE = Path("docs") / "settings.md"
"""Where the reference goes, relative to the repository's root."""
EXAMPLE = Path("config") / "settings.example.toml"
"""Where the example settings file goes, relative to the repository's root."""
ENV_PREFIX = "BYOA_"
NESTED = "__"
GENERATOR = "python -m router.settings_doc"
WIDTH = 88
"""Line width of the example file's comments."""


@dataclass(frozen=True)
class Leaf:
    """One setting that takes a single value (a number, a string, a list)."""

    path: tuple[str, ...]
    kind: str
    """Its type and bounds, as the reference prints them."""
    default: Any
    doc: str

    @property
    def key(self) -> str:
        """The dotted TOML key."""
        return ".".join(self.path)

    @property
    def env(self) -> str:
        """The environment variable that sets it."""
        return ENV_PREFIX + NESTED.join(p.upper() for p in self.path)


@dataclass(frozen=True)
class Table:
    """A group of settings that is a table in TOML: a nested model, or a mapping."""

    path: tuple[str, ...]
    doc: str
    leaves: list[Leaf]
    tables: list[Table]
    key: str = ""
    """For a mapping, what its keys are (`plan`, `mode`, ...)."""


# --- reading the models ----------------------------------------------------------------


def _doc(info: FieldInfo, where: str) -> str:
    """A field's docstring on one line; every field must have one."""
    if not info.description:
        raise ValueError(f"{where} has no docstring: write one in router/settings.py")
    return " ".join(info.description.split())


def _number(value: float) -> str:
    """A bound for people: 86,400 rather than 86400.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:,}" if isinstance(value, int) else repr(value)


def _bounds(metadata: list[Any]) -> list[str]:
    """The numeric bounds and string pattern among a field's constraints."""
    out: list[str] = []
    for m in metadata:
        if isinstance(m, at.Gt):
            out.append(f"> {_number(typing.cast(float, m.gt))}")
        elif isinstance(m, at.Ge):
            out.append(f"≥ {_number(typing.cast(float, m.ge))}")
        elif isinstance(m, at.Lt):
            out.append(f"< {_number(typing.cast(float, m.lt))}")
        elif isinstance(m, at.Le):
            out.append(f"≤ {_number(typing.cast(float, m.le))}")
        elif isinstance(m, FieldInfo):
            out.extend(_bounds(m.metadata))
        elif getattr(m, "pattern", None):
            out.append(f"matching `{m.pattern}`")
    return out


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    """An `Annotated[T, ...]` as (T, its constraints); any other type as (type, [])."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, metadata
    return annotation, []


def _kind(annotation: Any, metadata: list[Any]) -> str:
    """A field's type and bounds in words."""
    base, more = _unwrap(annotation)
    bounds = _bounds([*more, *metadata])
    if isinstance(base, type) and issubclass(base, Enum):
        name = "one of " + ", ".join(f"`{m.value}`" for m in base)
    elif typing.get_origin(base) is Literal:
        name = "one of " + ", ".join(f"`{v}`" for v in typing.get_args(base))
    elif base is bool:
        name = "boolean"
    elif base is int:
        name = "integer"
    elif base is float:
        name = "number"
    elif base is str:
        name = "string"
    elif base is SecretStr:
        name = "string, secret"
    elif typing.get_origin(base) is list and set(typing.get_args(typing.get_args(base)[0])) == {
        IPv4Network,
        IPv6Network,
    }:
        name = "list of networks (CIDR); in the environment, comma-separated"
    elif set(typing.get_args(base)) == {str, type(None)}:
        name = "string, or unset"
    else:
        raise ValueError(f"no words for the type {base!r}: teach router/settings_doc.py")
    return " ".join([name, " and ".join(bounds)]).strip()


def _model(path: tuple[str, ...], doc: str, model: type[BaseModel], defaults: Any) -> Table:
    """A model's fields, read in declaration order; `defaults` gives each field's value."""
    leaves: list[Leaf] = []
    tables: list[Table] = []
    for name, info in model.model_fields.items():
        where = f"{model.__name__}.{name}"
        here = (*path, name)
        value = getattr(defaults, name)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            tables.append(_model(here, _doc(info, where), annotation, value))
        elif typing.get_origin(annotation) is dict:
            key_type, value_type = typing.get_args(annotation)
            keys = [k for k in key_type if k in value]  # the enum's order
            if isinstance(value_type, type) and issubclass(value_type, BaseModel):
                sub = [_model((*here, str(k.value)), "", value_type, value[k]) for k in keys]
                tables.append(Table(here, _doc(info, where), [], sub, key_type.__name__))
            else:
                kind = _kind(value_type, [])
                items = [Leaf((*here, str(k.value)), kind, value[k], "") for k in keys]
                tables.append(Table(here, _doc(info, where), items, [], key_type.__name__))
        else:
            leaves.append(Leaf(here, _kind(annotation, info.metadata), value, _doc(info, where)))
    return Table(path, doc, leaves, tables)


def table_of(model: type[BaseModel]) -> Table:
    """Every field of `model` with its default (never read from the environment or a
    file); a field without a docstring is refused (ValueError)."""
    return _model((), "", model, model.model_construct())


# --- writing TOML ----------------------------------------------------------------------


def _toml(value: Any) -> str:
    """A default as a TOML value."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(str(v)) for v in value) + "]"
    raise ValueError(f"no TOML for {value!r}")


def _comment(text: str) -> list[str]:
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ")


def _example_table(table: Table, out: list[str], comments: bool = True, gap: bool = True) -> None:
    """A table's keys, then its sub-tables; `comments`: say what each key is; `gap`: a blank
    line before the table."""
    if table.path and table.leaves:
        if gap:
            out.append("")
        if table.doc:
            out.extend(_comment(table.doc))
        out.append(f"[{'.'.join(table.path)}]")
    for leaf in table.leaves:
        if leaf.doc and comments:
            out.append("")
            out.extend(_comment(leaf.doc))
        name = leaf.path[-1]
        if leaf.default is None:
            out.append(f'# {name} = "..."  # unset by default')
        else:
            out.append(f"{name} = {_toml(leaf.default)}")
    for sub in table.tables:
        if not sub.leaves:  # a mapping of tables (the plans): say once what each key is
            out.append("")
            out.extend(_comment(sub.doc))
            for i, each in enumerate(sub.tables):
                _example_table(each, out, comments=i == 0, gap=i > 0)
        else:
            _example_table(sub, out)


def example() -> str:
    """The text of `config/settings.example.toml`: every setting, at its default."""
    out = [
        "# Settings for `byoa --config FILE ...` (or BYOA_CONFIG=FILE): every setting, at its",
        "# default. Every key can also be set from the environment with the BYOA_ prefix,",
        "# nested with __ (BYOA_PLANS__PRO__FAST_LIMIT=8); the environment wins over this file.",
        "# Reference: docs/settings.md.",
        f"# Generated by `{GENERATOR}` from router.settings.Settings: edit the field",
        "# docstrings there, not this file.",
    ]
    _example_table(table_of(Settings), out)
    return "\n".join(out) + "\n"


# --- writing the reference -------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _anchor(env: str) -> str:
    return f'<a id="{env.lower()}"></a>`{env}`'


def _default(value: Any) -> str:
    return "unset" if value is None else f"`{_toml(value)}`"


def _leaf_rows(leaves: list[Leaf]) -> list[str]:
    rows = ["| environment | TOML key | default | type | meaning |", "|---|---|---|---|---|"]
    for leaf in leaves:
        cells = [_anchor(leaf.env), f"`{leaf.key}`", _default(leaf.default), leaf.kind, leaf.doc]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _map_rows(table: Table) -> list[str]:
    """A mapping of single values: one row per key."""
    rows = ["| environment | TOML key | default | type |", "|---|---|---|---|"]
    for leaf in table.leaves:
        cells = [_anchor(leaf.env), f"`{leaf.key}`", _default(leaf.default), leaf.kind]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _models_rows(table: Table) -> list[str]:
    """A mapping of models (the plans): what each field is, then every key's defaults."""
    first = table.tables[0]
    fields = [leaf.path[-1] for leaf in first.leaves]
    prefix = ENV_PREFIX + NESTED.join(p.upper() for p in table.path)
    rows = ["| field | environment | type | meaning |", "|---|---|---|---|"]
    for leaf in first.leaves:
        name = leaf.path[-1]
        env = f"`{prefix}{NESTED}<{table.key.upper()}>{NESTED}{name.upper()}`"
        cells = [f"`{name}`", env, leaf.kind, leaf.doc]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    rows += ["", "| TOML table | " + " | ".join(f"`{f}`" for f in fields) + " |"]
    rows.append("|---" * (len(fields) + 1) + "|")
    for sub in table.tables:
        cells = [f"`[{'.'.join(sub.path)}]`", *(_default(leaf.default) for leaf in sub.leaves)]
        rows.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return rows


def _reference_table(table: Table, out: list[str]) -> None:
    """A section per sub-table: a mapping of models, a mapping of values, or a model."""
    for sub in table.tables:
        out += ["", f"## `[{'.'.join(sub.path)}]`", "", sub.doc, ""]
        if sub.tables and not sub.leaves:
            out += _models_rows(sub)
        elif sub.key:
            out += _map_rows(sub)
        else:
            out += _leaf_rows(sub.leaves)
            _reference_table(sub, out)


def reference() -> str:
    """The text of `docs/settings.md`."""
    top = table_of(Settings)
    out = [
        "# Settings reference",
        "",
        f"<!-- Generated by `{GENERATOR}` from router.settings.Settings:",
        "edit the field docstrings there, not this page. -->",
        "",
        "Every setting, its environment variable, its key in the TOML settings file, its",
        "default, its type and bounds. The environment wins over the file, and the file over",
        "the defaults ([Configuration](configuration.md)); a value out of its bounds is",
        "refused at start, naming the setting. `config/settings.example.toml` holds every",
        "setting at its default, generated from the same source.",
        "",
        "## Top level",
        "",
        *_leaf_rows(top.leaves),
    ]
    _reference_table(top, out)
    return "\n".join(out) + "\n"


def write(root: Path) -> list[Path]:
    """Write the reference and the example under `root`; returns the files changed."""
    changed = []
    for path, text in ((root / REFERENCE, reference()), (root / EXAMPLE, example())):
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else ".")
    if not (root / "router" / "settings.py").is_file():
        print(f"{root}: not the repository's root (no router/settings.py)", file=sys.stderr)
        return 2
    for path in write(root):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
