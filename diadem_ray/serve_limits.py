"""Request guards of the Serve app: body-size limits and the clip-URI allow-list.

Kept apart from :mod:`diadem_ray.serve` so they are testable without Ray: both are plain Python
(the middleware is a bare ASGI callable; Starlette is imported only to answer a refusal).
"""

from __future__ import annotations

import os
import posixpath
from typing import Any, Dict, List, Mapping, Optional, Sequence
from urllib.parse import unquote, urlsplit


class UriRefused(ValueError):
    """A clip URI the server will not read; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def printable(text: str) -> str:
    """``text`` with lone surrogates escaped, so that it can be written as UTF-8 (in a JSON answer)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def check_uri(uri: str, roots: Sequence[str]) -> str:
    """``uri`` if it names a clip under one of ``roots``, else :class:`UriRefused` (403 outside the
    roots, with ``..`` segments, or a remote URI with a query, fragment or parameters; 404 for a
    local file that does not exist or is not a regular file; 422 for an empty URI or one with
    control characters or invalid Unicode).

    Local paths are compared after resolving symlinks and ``..`` (``os.path.realpath``), so neither
    can step out of a root; remote URIs (``s3://bucket/prefix``) must share the root's scheme and
    bucket (host, port and credentials exactly as the root names them) and lie under its prefix,
    and may not contain ``..`` segments (also percent-encoded). A remote URI carries no query,
    fragment or ``;`` parameters: a filesystem layer may read those as settings (an endpoint, a
    scheme), which would let a client point the server at a host of its choosing.
    """
    if not uri or not uri.strip():
        raise UriRefused(422, "uri is empty")
    bad = next(
        (i for i, ch in enumerate(uri) if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF), None
    )
    if bad is not None:
        raise UriRefused(
            422,
            f"uri has a control character or invalid Unicode at index {bad} (U+{ord(uri[bad]):04X}); "
            "send the path as plain text",
        )
    if not roots:
        raise UriRefused(
            403, "this server reads no clip URIs (serve.allowed_uri_roots is empty); upload the clip instead"
        )
    if _is_local(uri):
        path = os.path.realpath(uri.removeprefix("file://"))
        for root in roots:
            if not _is_local(root):
                continue
            base = os.path.realpath(root.removeprefix("file://"))
            if os.path.commonpath([path, base]) == base:
                if not os.path.isfile(path):  # follows the link: FIFOs, devices and folders are not clips
                    raise UriRefused(404, f"{uri}: no such clip (or not a regular file)")
                return path
        raise UriRefused(403, f"{uri} is outside the allowed roots ({', '.join(roots)})")
    parts = urlsplit(uri)
    if parts.query or parts.fragment or "?" in uri or "#" in uri or ";" in parts.path:
        raise UriRefused(
            403, f"{printable(uri)}: remote URIs take no query, fragment or ';' parameters; name the object only"
        )
    segments = unquote(parts.path).split("/")
    if ".." in segments or "." in segments:
        raise UriRefused(403, f"{uri}: '.' and '..' path segments are not accepted")
    for root in roots:
        if _is_local(root):
            continue
        r = urlsplit(root)
        prefix = posixpath.join(r.path.rstrip("/"), "")
        if (parts.scheme, parts.netloc) == (r.scheme, r.netloc) and (parts.path + "/").startswith(prefix):
            return uri
    raise UriRefused(403, f"{uri} is outside the allowed roots ({', '.join(roots)})")


class RequireJson:
    """ASGI middleware: 415 for a POST to one of ``paths`` whose Content-Type is not JSON
    (``application/json`` or ``application/*+json``), before the body is read."""

    def __init__(self, app: Any, paths: Sequence[str]):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST" and scope.get("path") in self.paths:
            ctype = b""
            for key, value in scope.get("headers", ()):
                if key == b"content-type":
                    ctype = value
            kind = ctype.split(b";")[0].strip().lower()
            if not (kind == b"application/json" or (kind.startswith(b"application/") and kind.endswith(b"+json"))):
                from starlette.responses import JSONResponse

                shown = printable(kind.decode("latin-1")) or "(none)"
                response = JSONResponse(
                    status_code=415,
                    content={
                        "detail": f"Content-Type {shown!r} not accepted on {scope.get('path')}; send application/json"
                    },
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimit:
    """ASGI middleware: 413 for a request body over its limit (``per_path`` overrides ``max_bytes``
    for exact paths). A declared ``Content-Length`` is checked before anything is read; a chunked
    body (no length) is buffered up to the limit and refused as soon as it passes it. Cheaper per
    request than Starlette's ``BaseHTTPMiddleware``."""

    def __init__(self, app: Any, max_bytes: int, per_path: Optional[Mapping[str, int]] = None):
        self.app = app
        self.max_bytes = max_bytes
        self.per_path: Dict[str, int] = dict(per_path or {})

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.per_path.get(scope.get("path", ""), self.max_bytes)
        length: Optional[bytes] = None
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                length = value
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await _refuse(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        messages: List[Dict[str, Any]] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _refuse(scope, receive, send, limit)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _refuse(scope: Dict[str, Any], receive: Any, send: Any, limit: int) -> None:
    from starlette.responses import JSONResponse

    response = JSONResponse(status_code=413, content={"detail": f"request body over {limit} bytes"})
    await response(scope, receive, send)
