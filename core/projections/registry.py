"""The built-in projections, by name."""

from __future__ import annotations

from typing import Any

from core.errors import NotFound
from core.projections.base import Projection
from core.projections.history import HISTORY
from core.projections.plan import PLAN
from core.projections.progress import PROGRESS

PROJECTIONS: tuple[Projection[Any], ...] = (PLAN, PROGRESS, HISTORY)


def get_projection(name: str) -> Projection[Any]:
    for projection in PROJECTIONS:
        if projection.name == name:
            return projection
    raise NotFound(f"There is no projection named '{name}'.", code="projection_not_found", field="name")
