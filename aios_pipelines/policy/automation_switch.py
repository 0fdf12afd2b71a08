"""The automation stop switch: an operator pauses automatic decisions, and resumes them.

While paused, the decision policy routes every application to human review (see
:func:`aios_pipelines.policy.evaluate.evaluate`). The switch is one small JSON file,
``<control dir>/automation.json`` (``AiosPaths(home).control``), holding the current state
and the full history of changes (who, why, when, what). No file means "not paused".

Writes are atomic (a temporary file in the same folder, fsynced, then ``os.replace``), and
changes are serialised with an advisory lock where the platform has one, so two operators
flipping the switch at once both land in the history.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

try:  # POSIX advisory locks; elsewhere changes are still atomic, just not serialised
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

SWITCH_FILE = "automation.json"
FORMAT_VERSION = 1


class AutomationSwitchError(RuntimeError):
    """The switch file exists but cannot be read; automation state is unknown."""


@dataclass(frozen=True)
class AutomationChange:
    action: str  # "pause" | "resume"
    who: str
    why: str
    at: str  # ISO-8601, UTC

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass(frozen=True)
class AutomationStatus:
    paused: bool
    changed_by: str | None = None
    reason: str | None = None
    changed_at: str | None = None
    history: list[AutomationChange] = field(default_factory=list)


def switch_path(control_dir: str | Path) -> Path:
    return Path(control_dir) / SWITCH_FILE


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise AutomationSwitchError(f"cannot read automation switch {path}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AutomationSwitchError(f"automation switch {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("paused"), bool) or not isinstance(
        data.get("history"), list
    ):
        raise AutomationSwitchError(f"automation switch {path} lacks 'paused' (bool) or 'history' (list)")
    return data


def _status_from(data: dict[str, Any] | None, path: Path) -> AutomationStatus:
    if data is None:
        return AutomationStatus(paused=False)
    try:
        history = [AutomationChange(**entry) for entry in data["history"]]
    except TypeError as exc:
        raise AutomationSwitchError(f"automation switch {path} has a malformed history entry: {exc}") from exc
    last = history[-1] if history else None
    return AutomationStatus(
        paused=data["paused"],
        changed_by=last.who if last else None,
        reason=last.why if last else None,
        changed_at=last.at if last else None,
        history=history,
    )


def status(control_dir: str | Path) -> AutomationStatus:
    """The switch as stored now; no file means automation runs (not paused)."""
    path = switch_path(control_dir)
    return _status_from(_read(path), path)


def is_paused(control_dir: str | Path) -> bool:
    return status(control_dir).paused


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(folder / f"{SWITCH_FILE}.lock", "a+") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def _change(control_dir: str | Path, action: str, who: str, why: str, now: datetime | None) -> AutomationStatus:
    if not isinstance(who, str) or not who.strip():
        raise ValueError("who is required: name the person changing the automation switch")
    if not isinstance(why, str) or not why.strip():
        raise ValueError("why is required: say why the automation switch is changed")
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc).isoformat()
    folder = Path(control_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = switch_path(folder)
    with _locked(folder):
        data = _read(path) or {"format_version": FORMAT_VERSION, "paused": False, "history": []}
        data["paused"] = action == "pause"
        data["history"].append(AutomationChange(action=action, who=who.strip(), why=why.strip(), at=when).as_dict())
        _write_atomic(path, data)
    return _status_from(data, path)


def pause(control_dir: str | Path, who: str, why: str, *, now: datetime | None = None) -> AutomationStatus:
    """Stop automatic decisions: from now on every application goes to review."""
    return _change(control_dir, "pause", who, why, now)


def resume(control_dir: str | Path, who: str, why: str, *, now: datetime | None = None) -> AutomationStatus:
    """Let the policy decide automatically again."""
    return _change(control_dir, "resume", who, why, now)
