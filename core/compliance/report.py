"""The one result shape every compliance check answers with: ok, and named problems.

A problem has a stable ``code`` (clients and tests branch on it), a sentence a person
can read, and where known the stream, version and position at fault.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Problem(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    code: str
    message: str
    stream_id: str | None = None
    version: int | None = None
    position: int | None = None
    #: The file at fault (an anchor, a ledger), when the problem is in one.
    file: str | None = None


class VerifyResult(msgspec.Struct, kw_only=True):
    #: What was checked: "receipt", "export", "anchors", "erasure_ledger".
    kind: str
    problems: list[Problem] = msgspec.field(default_factory=list)
    #: Counts and facts about what was checked (events, streams, anchors, …).
    details: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def codes(self) -> list[str]:
        return [p.code for p in self.problems]

    def add(self, code: str, message: str, **where: Any) -> None:
        self.problems.append(Problem(code=code, message=message, **where))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ok": self.ok, "problems": msgspec.to_builtins(self.problems),
                "details": msgspec.to_builtins(self.details)}


def break_code(reason: str) -> str:
    """A stable code for a reason ``core.events.verify.check_event`` gave."""
    if reason.startswith("stored content"):
        return "event_content_changed"
    if reason.startswith("version"):
        return "event_missing_or_moved"
    return "chain_broken"
