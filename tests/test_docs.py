"""The documentation pages name what the code has: every error code, metric, alert and
CLI command; the README stays a short entry point that states the two commands and links
only to pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

import click
import yaml

from router.cli import main
from router.models import ErrorCode

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
README = REPO / "README.md"
METRIC = re.compile(r'"(byoa_[a-z_]+)"')


def page(*names: str) -> str:
    return "\n".join((DOCS / name).read_text() for name in names)


def commands(group: click.Group, prefix: str = "byoa") -> list[str]:
    """Every command line `byoa ...` the CLI has, groups walked."""
    out = []
    for name, command in group.commands.items():
        line = f"{prefix} {name}"
        if isinstance(command, click.Group):
            out += commands(command, line)
        else:
            out.append(line)
    return out


def test_every_error_code_is_documented() -> None:
    """A caller's codes on the submitting and HTTP pages, an operator's (the CLI's) on the
    CLI and accounts pages."""
    text = page("submitting.md", "http-api.md", "cli.md", "accounts.md")
    missing = [c.value for c in ErrorCode if f"`{c.value}`" not in text]
    assert not missing, (
        f"error codes missing from docs (submitting, http-api, cli, accounts): {missing}"
    )


def test_every_metric_is_documented() -> None:
    text = page("monitoring.md")
    sources = [REPO / "router" / "metrics.py", REPO / "router" / "api" / "metrics.py"]
    names = {m for path in sources for m in METRIC.findall(path.read_text())}
    assert len(names) > 20  # the pattern still finds them
    missing = sorted(n for n in names if n not in text)
    assert not missing, f"metrics missing from docs/monitoring.md: {missing}"


def test_every_alert_is_documented() -> None:
    rules = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
    alerts = [r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r]
    text = page("monitoring.md")
    missing = [a for a in alerts if f"`{a}`" not in text]
    assert alerts and not missing, f"alerts missing from docs/monitoring.md: {missing}"


def test_every_command_is_documented() -> None:
    text = page("cli.md", "accounts.md")
    found = commands(main)
    assert "byoa accounts load" in found
    missing = [c for c in found if c not in text]
    assert not missing, f"commands missing from docs/cli.md and accounts.md: {missing}"


def test_the_readme_is_short_and_states_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 150
    for command in ("scripts/demo", "scripts/test", "redis-cli LPUSH", "from router.client"):
        assert command in text, command


def test_the_readme_links_only_to_pages_that_exist() -> None:
    links = re.findall(r"\]\((docs/[^)#]+)", README.read_text())
    assert links
    missing = [link for link in links if not (REPO / link).is_file()]
    assert not missing, missing
    pages = {p.name for p in DOCS.glob("*.md")}
    linked = {Path(link).name for link in links}
    assert pages <= linked, f"pages the README does not link: {sorted(pages - linked)}"
