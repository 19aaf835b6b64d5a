"""``GET /metrics``: Prometheus exposition (api/metrics.py), for a scraper holding ALLIANCE_METRICS_TOKEN."""

from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotAuthorizedException

from alliance.api.metrics import authorized, exposition
from alliance.api.state import AppServices
from alliance.core.errors import NotFound


@get("/metrics", operation_id="metrics", include_in_schema=False, exclude_from_auth=True)
async def metrics(request: Request[Any, Any, Any], svc: AppServices) -> Response[bytes]:
    token = svc.runtime.settings.metrics_token
    if token is None:  # not enabled: as if the route did not exist
        raise NotFound("no such resource", code="not_found")
    if not authorized(token, request.headers.get("authorization")):
        raise NotAuthorizedException("the metrics token (ALLIANCE_METRICS_TOKEN) is required")
    body, media_type = await exposition(svc.pool, svc.runtime.replica)
    return Response(body, media_type=media_type, headers={"Cache-Control": "no-store"})
