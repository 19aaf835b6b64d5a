"""The built-in projections, by name."""

from __future__ import annotations

from typing import Any

from alliance.core.errors import NotFound
from alliance.core.projections.base import Projection
from alliance.core.projections.history import HISTORY
from alliance.core.projections.plan import PLAN
from alliance.core.projections.progress import PROGRESS

PROJECTIONS: tuple[Projection[Any], ...] = (PLAN, PROGRESS, HISTORY)


def get_projection(name: str) -> Projection[Any]:
    for projection in PROJECTIONS:
        if projection.name == name:
            return projection
    raise NotFound(f"There is no projection named '{name}'.", code="projection_not_found", field="name")
