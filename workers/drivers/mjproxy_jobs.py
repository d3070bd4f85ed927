"""What a job is to a midjourney-proxy: the handle that names it, and the button or change a
child task sends (Midjourney's buttons as the proxies relay them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from router.driver import DriverError, UnknownJob
from router.models import Mode

HANDLE_PREFIX = "mjp"
MODES = frozenset(m.value for m in Mode)
CHANGE_ACTIONS = {"upscale": "UPSCALE", "variation": "VARIATION", "reroll": "REROLL"}
"""novicezk's `/submit/change` actions (dto/SubmitChangeDTO.java:15-23, enums/
TaskAction.java:8-28): the only children a proxy without buttons runs."""


def image_index(params: dict[str, Any]) -> int:
    """Which of the grid's images a child acts on (`input.index`, 1 to 4)."""
    try:
        index = int(params.get("index", 1))
    except (TypeError, ValueError):
        index = 0
    if not 1 <= index <= 4:
        raise DriverError("input.index must be a number from 1 to 4")
    return index


def button_prefix(task_type: str, params: dict[str, Any]) -> str:
    """The start of the customId of the button a child task presses, as the proxies relay
    Midjourney's buttons (e.g. `MJ::JOB::upsample::2::<hash>`, `MJ::Outpaint::50::1::...`)."""
    index = image_index(params)
    strength = {"subtle": "low_", "strong": "high_"}.get(str(params.get("strength", "")), "")
    zoom = {"1.5": "MJ::Outpaint::75::", "custom": "MJ::CustomZoom::"}
    prefixes = {
        "upscale": f"MJ::JOB::upsample::{index}::",
        "variation": f"MJ::JOB::{strength}variation::{'' if strength else f'{index}::'}",
        "reroll": "MJ::JOB::reroll::",
        "pan": f"MJ::JOB::pan_{str(params.get('direction', 'left')).lower()}::",
        "outpaint": zoom.get(str(params.get("zoom", "2")), "MJ::Outpaint::50::"),
        "inpaint": "MJ::Inpaint::",
    }
    if task_type not in prefixes:
        raise DriverError(f"{task_type} is not a child task type")
    return prefixes[task_type]


@dataclass(frozen=True)
class Handle:
    """What a handle carries: enough for any process to find the job (no secret)."""

    owner: str
    account_id: str
    mode: Mode
    task_type: str
    task_id: str

    def __str__(self) -> str:
        return ":".join(
            (HANDLE_PREFIX, self.owner, self.account_id, self.mode, self.task_type, self.task_id)
        )

    @classmethod
    def parse(cls, handle: str) -> Handle:
        parts = handle.split(":", 5)
        if len(parts) != 6 or parts[0] != HANDLE_PREFIX or parts[3] not in MODES:
            raise UnknownJob(f"{handle!r} is not a midjourney-proxy handle")
        return cls(parts[1], parts[2], Mode(parts[3]), parts[4], parts[5])
