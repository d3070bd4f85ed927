"""The settings reference (docs/settings.md) and config/settings.example.toml are what
`router.settings_doc` generates from `Settings`, and the example is the defaults: copying
it changes nothing, and no settings file the project ships changes the strategy."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from router import settings_doc
from router.settings import Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / settings_doc.REFERENCE
EXAMPLE = REPO / settings_doc.EXAMPLE
REGENERATE = "run `python -m router.settings_doc` and commit the result"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No BYOA_ variable of the calling shell leaks into the settings read here."""
    for name in list(os.environ):
        if name.upper().startswith("BYOA_"):
            monkeypatch.delenv(name)
    yield


def paths(value: Any, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every leaf key of a nested mapping, as a path."""
    if not isinstance(value, dict):
        return {prefix}
    return {p for k, v in value.items() for p in paths(v, (*prefix, str(k)))}


def default_paths() -> set[tuple[str, ...]]:
    """Every setting of `Settings`, as a path of TOML keys (unset ones included)."""
    return paths(Settings().model_dump(mode="json"))


def test_the_reference_is_generated_from_the_settings() -> None:
    assert REFERENCE.read_text() == settings_doc.reference(), (
        f"{REFERENCE.relative_to(REPO)} differs from the settings' docstrings: {REGENERATE}"
    )


def test_the_example_is_generated_from_the_settings() -> None:
    assert EXAMPLE.read_text() == settings_doc.example(), (
        f"{EXAMPLE.relative_to(REPO)} differs from the settings: {REGENERATE}"
    )


def test_the_example_loads_as_the_defaults() -> None:
    assert load_settings(EXAMPLE) == Settings()


def test_the_example_sets_every_setting_but_the_unset_ones() -> None:
    written = paths(tomllib.loads(EXAMPLE.read_text()))
    unset = {p for p in default_paths() if p not in written}
    assert unset == {("callback_url",)}  # unset by default: TOML has no null
    assert written <= default_paths()
    assert "# callback_url = " in EXAMPLE.read_text()


def test_the_reference_names_every_setting_with_its_variable() -> None:
    text = REFERENCE.read_text()
    for path in default_paths():
        if path[0] == "plans":  # one row per field, for every plan: BYOA_PLANS__<PLAN>__...
            assert f"`BYOA_PLANS__<PLAN>__{path[-1].upper()}`" in text
            assert f"`[plans.{path[1]}]`" in text
        else:
            assert f"`BYOA_{'__'.join(p.upper() for p in path)}`" in text, path


def test_every_setting_has_a_docstring_in_the_reference() -> None:
    text = REFERENCE.read_text()
    for name, info in Settings.model_fields.items():
        assert info.description, f"Settings.{name} has no docstring"
        assert " ".join(info.description.split()) in text, name


def test_a_setting_without_a_docstring_is_refused() -> None:
    """The generator will not write a row nobody explained."""
    from pydantic import BaseModel

    class Undocumented(BaseModel):
        model_config = {"use_attribute_docstrings": True}

        documented: int = 1
        """Says what it is."""
        bare: int = 2

    with pytest.raises(ValueError, match=r"Undocumented\.bare has no docstring"):
        settings_doc.table_of(Undocumented)


def test_the_generator_writes_both_files_and_then_nothing(tmp_path: Path) -> None:
    (tmp_path / "router").mkdir()
    (tmp_path / "router" / "settings.py").write_text("")
    (tmp_path / "docs").mkdir()
    (tmp_path / "config").mkdir()
    assert settings_doc.main([str(tmp_path)]) == 0
    assert (tmp_path / settings_doc.REFERENCE).read_text() == settings_doc.reference()
    assert (tmp_path / settings_doc.EXAMPLE).read_text() == settings_doc.example()
    assert settings_doc.write(tmp_path) == []  # nothing left to change


def test_the_generator_refuses_a_directory_that_is_not_the_repository(tmp_path: Path) -> None:
    assert settings_doc.main([str(tmp_path)]) == 2
    assert not (tmp_path / settings_doc.EXAMPLE).exists()


def test_no_settings_file_shipped_changes_the_strategy() -> None:
    """The example (mounted by compose, installed by the systemd steps) and the Kubernetes
    ConfigMap leave the strategy at its default, and compose's environment sets none."""
    default = Settings().strategy.value
    configmap = next(
        doc
        for doc in yaml.safe_load_all((REPO / "deploy" / "k8s" / "configmap.yaml").read_text())
        if doc and doc.get("kind") == "ConfigMap"
    )
    files = {
        "config/settings.example.toml": EXAMPLE.read_text(),
        "deploy/k8s/configmap.yaml": configmap["data"]["settings.toml"],
    }
    for name, text in files.items():
        assert tomllib.loads(text).get("strategy", default) == default, name
    compose = (REPO / "deploy" / "compose.yaml").read_text()
    assert "BYOA_STRATEGY" not in compose
    for name in ("byoa.env.example",):
        assert "BYOA_STRATEGY=" not in (REPO / "deploy" / "systemd" / name).read_text()
