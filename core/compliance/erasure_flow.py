"""Erasing a client: the domain's checks, the ledger outside the database, the key, the record.

Order matters: (1) the request is recorded and a legal hold refuses it; (2) the ledger line is
written (outside the database, so a restore from backup can re-apply it); (3) the client's
data key is destroyed and every process told to drop its cached copy; (4) ``erasure.completed``
is appended, and every projection re-folds the client from events whose personal fields now
read as erased. The key goes before the event so no projection can re-fold with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid5

from alliance.core.client import CompleteErasure, RequestErasure, decide_client
from alliance.core.compliance.erasure import erase_subject
from alliance.core.compliance.signing import Signer
from alliance.core.errors import ValidationError
from alliance.core.handling import CommandHandler
from alliance.core.identity import Actor
from alliance.core.logging import get_logger

log = get_logger("alliance.erasure")


@dataclass(frozen=True)
class ErasureOutcome:
    client_id: UUID
    request_id: UUID
    key_destroyed: bool
    ledger_seq: int
    duplicate: bool


async def erase_client(handler: CommandHandler, signer: Signer, ledger_dir: Path, *, client_id: UUID,
                       tenant_id: UUID, actor: Actor, reason: str, command_id: UUID) -> ErasureOutcome:
    if not reason or not reason.strip():
        raise ValidationError("say why the client is erased (recorded as a hash, never as text)",
                              code="reason_required", field="reason")
    request_id = uuid5(command_id, "erasure")
    now = datetime.now(UTC)
    loaded = await handler.load_client(client_id)
    if request_id not in loaded.state.erasure_requests:
        await handler.handle_client(client_id, RequestErasure(
            command_id=uuid5(command_id, "request"), actor=actor, at=now, tenant_id=tenant_id,
            request_id=request_id))
        loaded = await handler.load_client(client_id)
    complete = CompleteErasure(command_id=uuid5(command_id, "complete"), actor=actor, at=now,
                               tenant_id=tenant_id, request_id=request_id)
    if loaded.state.erased:
        outcome = await handler.handle_client(client_id, complete)
        return ErasureOutcome(client_id, request_id, False, -1, True)
    decide_client(complete, loaded.state)  # a legal hold (or any other rule) refuses before any key is touched
    store: Any = handler.store
    entry = await erase_subject(store.keys, ledger_dir, signer, subject_id=client_id, tenant_id=tenant_id,
                                reason=reason, request_id=request_id, actor_id=actor.id,
                                notify=getattr(store, "notify_key_destroyed", None))
    handler.cache.clear()  # this process at once; others on the key-destroyed notification
    outcome = await handler.handle_client(client_id, complete)
    log.info("client_erased", client=str(client_id), key_destroyed=entry["destroyed"],
             events=len(outcome.events))
    return ErasureOutcome(client_id, request_id, bool(entry["destroyed"]), int(entry.get("seq", -1)),
                          outcome.duplicate)
