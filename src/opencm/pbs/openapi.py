"""The OpenAPI 3.1 document of the Phone Book Service (served at ``/openapi.json``).

It describes opencm's own response format (``docs/pbs-protocol.md``); the request is Microsoft's.
"""

from __future__ import annotations

from typing import Any

from opencm import __version__


def _text(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/plain": {"schema": {"type": "string"}}}}


def _param(
    name: str, description: str, schema: dict[str, Any], *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _header(description: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern:
        schema["pattern"] = pattern
    return {"description": description, "schema": schema}


#: Values are taken literally (not percent-decoded), so an ignored one is at most 32 characters
#: that need no encoding.
_OTHER = {"type": "string", "maxLength": 32, "pattern": "^[A-Za-z0-9._~-]*$"}
_PB_HEADERS = {
    "ETag": _header("Strong validator; send it back in If-None-Match to get 304."),
    "Cache-Control": _header("Always `public, no-cache`: caches must revalidate."),
    "X-Opencm-Pbs-Kind": _header("none, delta or full", "^(none|delta|full)$"),
    "X-Opencm-Pbs-Book": _header("The phone book, upper case."),
    "X-Opencm-Pbs-Version": _header("The version the server has.", "^[0-9]+$"),
}


def openapi_document() -> dict[str, Any]:
    """The document as a plain dict (JSON-serialisable)."""
    cab_headers = {
        **_PB_HEADERS,
        "X-Opencm-Pbs-Base": _header("For a delta: the version it applies to.", "^[0-9]+$"),
        "X-Opencm-Pbs-Signature": _header("Base64 of the cab's minisign .minisig file."),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "opencm Phone Book Service",
            "version": __version__,
            "description": "Answers Connection Manager's phone-book update request. The request "
            "is Microsoft's ('How Connection Manager Works'); the response format is opencm's "
            "own, see docs/pbs-protocol.md.",
        },
        "paths": {
            "/pbserver/pbserver.dll": {
                "get": {
                    "operationId": "pbserver",
                    "summary": "Is the client's phone book current? Returns nothing, a delta or "
                    "the full book. Parameter names are matched case-insensitively.",
                    "parameters": [
                        _param("osarch", "Ignored.", _OTHER),
                        _param("ostype", "Ignored.", _OTHER),
                        _param("osver", "Ignored.", _OTHER),
                        _param("cmver", "Ignored.", _OTHER),
                        _param("lcid", "Ignored.", _OTHER),
                        _param(
                            "pbver",
                            "Installed version, 0 for none.",
                            {"type": "string", "pattern": "^[0-9]{1,9}$"},
                            required=True,
                        ),
                        _param(
                            "pb",
                            "Phone book name: 1-8 letters, digits or _, not all digits.",
                            {
                                "type": "string",
                                "pattern": "^[A-Za-z0-9_]*[A-Za-z_][A-Za-z0-9_]*$",
                                "minLength": 1,
                                "maxLength": 8,
                            },
                            required=True,
                        ),
                        {
                            "name": "If-None-Match",
                            "in": "header",
                            "required": False,
                            "schema": {"type": "string"},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "A delta or the full phone book (a cabinet).",
                            "headers": cab_headers,
                            "content": {
                                "application/vnd.ms-cab-compressed": {
                                    "schema": {"type": "string", "format": "binary"}
                                }
                            },
                        },
                        "204": {
                            "description": "No update: the client is current.",
                            "headers": _PB_HEADERS,
                        },
                        "304": {
                            "description": "If-None-Match matched the answer's ETag.",
                            "headers": _PB_HEADERS,
                        },
                        "400": _text("Bad Request: a bare request or a bad pb/pbver."),
                        "404": _text("No phone book of that name on this server."),
                        "414": _text("The query is longer than 2048 bytes."),
                    },
                }
            },
            "/admin/books/{book}/releases/{version}": {
                "put": {
                    "operationId": "uploadRelease",
                    "summary": "Publish a release: an uncompressed tar of full.cab, "
                    "delta-<B>.cab and their .minisig files.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "book",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "version",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        },
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/x-tar": {"schema": {"type": "string", "format": "binary"}}
                        },
                    },
                    "responses": {
                        "201": {
                            "description": "Published and current.",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["book", "version"],
                                        "properties": {
                                            "book": {"type": "string"},
                                            "version": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        "400": {
                            "description": "Bad archive, name or version.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                        "401": _text("Missing or wrong token."),
                        "404": _text("Not a /admin/books/{BOOK}/releases/{VERSION} path."),
                        "403": _text("Upload over plain HTTP from a non-loopback client."),
                        "409": {
                            "description": "The version is not newer than the current one.",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        },
                    },
                }
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus text: hits per book and kind, served versions.",
                    "responses": {"200": _text("Prometheus exposition format 0.0.4.")},
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Books and versions served, and releases that failed to load.",
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
