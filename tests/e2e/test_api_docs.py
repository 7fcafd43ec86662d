"""The API page (/api/v1/docs/) and Swagger UI (/api/v1/docs/rest/) in Chromium, with every
request to another host refused: both work offline, under the site's Content-Security-Policy
(a refusal fails the test: tests/e2e/conftest.py). Screenshots: tests/e2e/artifacts/."""

from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from sessions_app.registry import PUSHES
from tests.e2e.conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

DESKTOP = {"width": 1280, "height": 900}


def offline(page, server):
    """Refuse every request to a host other than the server's; returns the list of those refused."""
    refused: list[str] = []
    own = urlsplit(server.http).netloc

    def route(route):
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    page.context.route("**/*", route)
    return refused


def test_the_api_page_shows_every_state_push_and_rest_endpoint_offline(server, new_page):
    page = new_page(viewport=DESKTOP)
    refused = offline(page, server)
    page.goto(server.http + "/api/v1/docs/")
    expect(page.get_by_role("heading", name="Interactive sessions: the API")).to_be_visible()
    document = page.request.get(server.http + "/api/v1/socket/asyncapi.json").json()
    states = [key.removeprefix("request.") for key in document["operations"] if key.startswith("request.")]
    assert len(states) >= 17
    for name in states:
        expect(page.locator(f"#state-{name} h3")).to_contain_text(name)
    for name in PUSHES:
        expect(page.locator(f"#push-{name} h3")).to_contain_text(name)
    rest = page.locator("#rest")
    for path in (
        "/api/v1/token/",
        "/api/v1/token/refresh/",
        "/api/v1/token/revoke/",
        "/api/v1/token/cookie/",
        "/healthz",
    ):
        expect(rest).to_contain_text(path)
    expect(page.locator("#state-patch")).to_contain_text('"ops"')
    expect(page.locator("#errors")).to_contain_text("patch_too_costly")
    expect(page.locator("#close-codes")).to_contain_text("4401")
    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]  # nothing overflows
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "api-docs-top.png")
    page.locator("#state-join").screenshot(path=ARTIFACTS / "api-docs-join.png")
    page.locator("#errors").screenshot(path=ARTIFACTS / "api-docs-errors.png")
    assert refused == []


def test_swagger_ui_renders_the_rest_api_from_the_packaged_files_offline(server, new_page):
    page = new_page(viewport=DESKTOP)
    refused = offline(page, server)
    page.goto(server.http + "/api/v1/docs/rest/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Interactive sessions: REST API")
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/token/refresh/")).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/healthz")).to_be_visible()
    page.locator(".opblock-summary-path", has_text="/healthz").click()
    expect(page.locator(".responses-table")).to_contain_text("503")
    assert refused == []
