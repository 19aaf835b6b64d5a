"""``GET /me``: who the bearer token is to Alliance. A page signed in through the identity
provider holds a token that names the provider's subject, not Alliance's id, tenant or role
(those come from Alliance's own link, see *Identity*); this says them, so the page knows which
client's views to open or which caseload to show."""

from uuid import UUID

import msgspec
from litestar import get

from alliance.api.auth import Principal


class Me(msgspec.Struct, frozen=True, kw_only=True):
    """The caller as Alliance knows them."""

    id: UUID = msgspec.field()
    """Alliance's id of the person: a client id for a client, a staff id for staff."""
    tenant_id: UUID
    """The clinic."""
    role: str
    """client, proxy, clinician, supervisor, admin or auditor."""


@get("/me", operation_id="whoAmI", tags=["identity"],
     summary="Who the bearer token is: Alliance id, clinic and role",
     description="Answers for any valid token (a deactivated staff member's is refused, as everywhere). "
                 "A frontend signed in through the identity provider calls it once to learn whose views to open.")
async def who_am_i(principal: Principal) -> Me:
    return Me(id=principal.id, tenant_id=principal.tenant_id, role=str(principal.role))
