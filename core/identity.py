"""Who acts: the roles Alliance knows and the actor carried by every command and event."""

from __future__ import annotations

import enum
from uuid import UUID

import msgspec


class Role(enum.StrEnum):
    CLIENT = "client"
    PROXY = "proxy"  # a guardian acting for a minor or a client who lacks capacity
    CLINICIAN = "clinician"
    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"
    SYSTEM = "system"  # the service itself (e.g. a risk flag raised by a measurement)


class Actor(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    role: Role

    @property
    def speaks_for_client(self) -> bool:
        return self.role in (Role.CLIENT, Role.PROXY)

    @property
    def is_staff(self) -> bool:
        return self.role in (Role.CLINICIAN, Role.SUPERVISOR, Role.AUDITOR, Role.ADMIN)
