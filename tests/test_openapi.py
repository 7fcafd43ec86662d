"""The REST API's OpenAPI schema (drf-spectacular, GET /api/v1/schema/) and the API pages
(/api/v1/docs/, /api/v1/docs/rest/): every DRF view is in the schema without being listed, and the
pages load nothing from another site."""

import re

import pytest
from django.test import override_settings
from django.urls import include, path
from drf_spectacular.validation import validate_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from sessions_app.registry import PUSHES, REGISTRY

pytestmark = pytest.mark.django_db


class MagicLinkSerializer(serializers.Serializer):
    email = serializers.EmailField()


class MagicLinkView(APIView):
    """A sign-in endpoint another app adds: it is in the schema with nothing else to do."""

    authentication_classes = ()
    permission_classes = ()
    serializer_class = MagicLinkSerializer

    def post(self, request):
        return Response({})


# ROOT_URLCONF of the test that adds an endpoint: the project's routes and one more DRF view.
urlpatterns = [path("", include("project.urls")), path("api/v1/magic-link/", MagicLinkView.as_view())]


def schema(client):
    response = client.get("/api/v1/schema/?format=json")
    assert response.status_code == 200
    return response.json()


def test_the_schema_is_valid_openapi_3_1_with_every_rest_endpoint(client):
    document = schema(client)
    validate_schema(document)  # drf-spectacular's copy of the OpenAPI 3.1 JSON Schema
    assert document["openapi"] == "3.1.0"
    operations = {(method, route) for route, item in document["paths"].items() for method in item}
    assert operations == {
        ("post", "/api/v1/token/"),
        ("post", "/api/v1/token/refresh/"),
        ("post", "/api/v1/token/revoke/"),
        ("post", "/api/v1/token/cookie/"),
        ("post", "/api/v1/token/cookie/refresh/"),
        ("post", "/api/v1/token/cookie/revoke/"),
        ("get", "/healthz"),
        ("get", "/metrics"),
    }


def test_the_token_endpoints_say_what_they_take_and_answer(client):
    document = schema(client)
    paths, components = document["paths"], document["components"]["schemas"]
    sign_in = paths["/api/v1/token/"]["post"]
    assert set(sign_in["responses"]) == {"200", "401", "429"}
    pair = sign_in["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert set(components[pair]["required"]) == {"access", "refresh"}
    cookie = paths["/api/v1/token/cookie/"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert components[cookie["$ref"].rsplit("/", 1)[-1]]["properties"] == {"access": {"type": "string"}}
    assert "403" in paths["/api/v1/token/cookie/refresh/"]["post"]["responses"]


@override_settings(ROOT_URLCONF=__name__)
def test_a_drf_view_added_to_the_urls_is_in_the_schema_without_being_listed(client):
    document = schema(client)
    added = document["paths"]["/api/v1/magic-link/"]["post"]
    body = added["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    assert document["components"]["schemas"][body]["properties"]["email"]["format"] == "email"
    assert "/api/v1/token/" in document["paths"]


def test_the_api_page_lists_every_endpoint_state_and_push_and_loads_nothing_from_elsewhere(client):
    response = client.get("/api/v1/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<script" not in html
    for url in re.findall(r'(?:href|src)="([^"]+)"', html):
        assert url.startswith(("/", "#", "data:")) and not url.startswith("//"), url
    for name in REGISTRY:
        assert f'id="state-{name}"' in html
    for name in PUSHES:
        assert f'id="push-{name}"' in html
    assert "/api/v1/token/cookie/revoke/" in html and "/healthz" in html
    assert '<a href="#schema-Snapshot">' in html and 'id="schema-Snapshot"' in html


def test_swagger_ui_is_served_from_the_packaged_files(client):
    response = client.get("/api/v1/docs/rest/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<style" not in html  # the Content-Security-Policy refuses inline styles
    assets = re.findall(r'(?:href|src)="([^"]+)"', html)
    assert any("swagger-ui-bundle.js" in url for url in assets)
    for url in assets:
        assert url.startswith("/"), url
        if url.startswith("/static/"):
            assert client.get(url).status_code == 200, url
    script = client.get("/api/v1/docs/rest/?script=")
    assert script.status_code == 200 and b"/api/v1/schema/" in script.content
