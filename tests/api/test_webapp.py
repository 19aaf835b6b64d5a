"""The reference web app's server side: the files at ``/app/`` under a strict
Content-Security-Policy, the sign-in options, the development-only demo sign-in list, and
``ALLIANCE_WEB_APP=off`` leaving all of it out. The pages themselves are driven in a real
browser by tests/browser/.
"""

from __future__ import annotations

import httpx

from alliance.api.app import create_app
from alliance.core.settings import load_settings
from tests.api.conftest import JWT_SECRET, KEK


async def test_the_app_is_served_under_a_strict_content_security_policy(api):
    r = await api.http.get("/app/")
    assert r.status_code == 200, r.text
    assert '<script type="module" src="/app/js/main.js">' in r.text
    policy = r.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert r.headers["x-content-type-options"] == "nosniff"
    for path, kind in (("/app/js/main.js", "javascript"), ("/app/css/app.css", "text/css"),
                       ("/app/vendor/uplot/uPlot.esm.js", "javascript")):
        r = await api.http.get(path)
        assert r.status_code == 200 and kind in r.headers["content-type"], (path, r.headers)
    assert (await api.http.get("/app/vendor/uplot/LICENSE")).status_code == 200


async def test_outside_development_there_is_no_demo_sign_in(api):
    assert api.settings.env == "production"
    r = await api.http.get("/app/dev-sign-in")
    assert r.status_code == 404
    assert "token" not in r.text
    r = await api.http.get("/app/sign-in-options")
    assert r.json() == {"development": False}  # no issuer configured: nothing to offer


def test_the_oidc_issuer_is_offered_and_allowed_by_the_policy(tmp_path):
    settings = load_settings({"ALLIANCE_KEK": KEK, "ALLIANCE_HOME": str(tmp_path),
                              "ALLIANCE_OIDC_ISSUER": "https://id.clinic.example/realms/a",
                              "ALLIANCE_OIDC_CLIENT_ID": "alliance-web"})
    from alliance.api.webapp import content_security_policy

    assert "connect-src 'self' https://id.clinic.example;" in content_security_policy(settings)
    assert settings.oidc_client_id == "alliance-web" and settings.web_app


async def test_web_app_off_leaves_it_out(tmp_path):
    settings = load_settings({"ALLIANCE_KEK": KEK, "ALLIANCE_JWT_SECRET": JWT_SECRET, "ALLIANCE_HOME": str(tmp_path),
                              "ALLIANCE_WEB_APP": "off"})
    assert settings.web_app is False
    app = create_app(settings)  # no lifespan is needed to route (and refuse) a request
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alliance.test") as http:
        for path in ("/app/", "/app/js/main.js", "/app/sign-in-options"):
            assert (await http.get(path)).status_code == 404, path


async def test_me_says_who_the_token_is(api, clinic):
    r = await api.http.get("/me", headers=api.token(clinic.tenant, "clinician", clinic.clinician))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": str(clinic.clinician), "tenant_id": str(clinic.tenant), "role": "clinician"}
    assert (await api.http.get("/me")).status_code == 401


def test_every_web_app_file_ships_in_the_package():
    """pip install gives a working app: every file under api/webapp/ is matched by the
    package-data patterns in pyproject.toml (setuptools ships nothing else from there)."""
    import fnmatch
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]["alliance.api"]
    files = [p.relative_to(root / "api").as_posix() for p in (root / "api" / "webapp").rglob("*") if p.is_file()]
    assert "webapp/index.html" in files and "webapp/vendor/uplot/LICENSE" in files
    unshipped = [f for f in files if not any(fnmatch.fnmatch(f, pattern) and f.count("/") == pattern.count("/")
                                             for pattern in patterns)]
    assert unshipped == []


def test_a_bad_web_app_setting_is_refused_naming_it():
    import pytest

    from alliance.core.errors import ConfigurationError

    with pytest.raises(ConfigurationError) as refused:
        load_settings({"ALLIANCE_WEB_APP": "maybe"})
    assert refused.value.field == "ALLIANCE_WEB_APP" and "on, off" in str(refused.value)
    assert load_settings({"ALLIANCE_WEB_APP": "OFF"}).web_app is False
