"""The ceiling for ``bench_api``: a bare Litestar hello-world route, served exactly as the
service is (``uvicorn bench.hello_app:create_app --factory --workers 2``), no database."""

from litestar import Litestar, get


@get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


def create_app() -> Litestar:
    return Litestar(route_handlers=[hello], logging_config=None, debug=False)
