"""Clip-URI allow-list (no traversal, symlinks resolved) and the body-size middleware (declared
and chunked bodies), without Ray."""

import asyncio
import json
import os

import pytest

from diadem_ray.serve_limits import BodyLimit, UriRefused, check_uri


def _refused(uri, roots):
    with pytest.raises(UriRefused) as info:
        check_uri(uri, roots)
    return info.value.status, str(info.value)


def test_local_uris_must_resolve_inside_a_root(tmp_path):
    root = tmp_path / "clips"
    (root / "sub").mkdir(parents=True)
    clip = root / "sub" / "a.mp4"
    clip.write_bytes(b"x")
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"x")
    os.symlink(secret, root / "link.mp4")
    roots = [str(root)]
    assert check_uri(str(clip), roots) == str(clip)
    assert check_uri("file://" + str(clip), roots) == str(clip)
    assert _refused(str(root / "sub" / ".." / ".." / "secret.mp4"), roots)[0] == 403
    assert _refused(str(root / "link.mp4"), roots)[0] == 403  # a symlink out of the root
    assert _refused(str(tmp_path / "clips-evil" / "a.mp4"), roots)[0] == 403  # a sibling sharing the prefix
    assert _refused(str(root / "nope.mp4"), roots)[0] == 404
    status, msg = _refused(str(clip), [])
    assert status == 403 and "allowed_uri_roots is empty" in msg
    assert _refused(" ", roots)[0] == 422


def test_remote_uris_need_scheme_bucket_and_prefix():
    roots = ["s3://bucket/clips"]
    assert check_uri("s3://bucket/clips/a.mp4", roots) == "s3://bucket/clips/a.mp4"
    for uri in (
        "s3://bucket/clips/../private/a.mp4",
        "s3://bucket/clips/%2e%2e/private/a.mp4",
        "s3://other/clips/a.mp4",
        "gs://bucket/clips/a.mp4",
        "s3://bucket/clipsX/a.mp4",
        "/etc/passwd",
    ):
        assert _refused(uri, roots)[0] == 403, uri


async def _echo(scope, receive, send):
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(len(body)).encode()})


def _run(mw, path, chunks, length=None):
    headers = [] if length is None else [(b"content-length", str(length).encode())]
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    sent = []

    async def receive():
        return queue.pop(0)

    async def send(msg):
        sent.append(msg)

    asyncio.run(mw(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def test_body_limit_declared_and_chunked():
    mw = BodyLimit(_echo, max_bytes=10, per_path={"/caption": 100})
    assert _run(mw, "/score", [b"12345"], length=5) == (200, b"5")
    status, body = _run(mw, "/score", [b"x" * 11], length=11)
    assert status == 413 and "over 10 bytes" in json.loads(body)["detail"]
    assert _run(mw, "/caption", [b"x" * 60], length=60) == (200, b"60")
    assert _run(mw, "/score", [b"1234", b"5678"]) == (200, b"8")  # chunked, under the limit: replayed intact
    assert _run(mw, "/score", [b"123456", b"789012"])[0] == 413  # chunked, over it
    assert _run(mw, "/score", [b"1"], length="x")[0] == 413  # a non-numeric length


def test_uris_with_control_characters_or_bad_unicode_are_422(tmp_path):
    roots = [str(tmp_path)]
    for uri in (str(tmp_path / "a\x00.mp4"), str(tmp_path / "a\n.mp4"), str(tmp_path / "\ud800.mp4"), "s3://b/c/\x00"):
        status, msg = _refused(uri, roots + ["s3://b/c"])
        assert status == 422 and "control character or invalid Unicode" in msg, uri


def test_remote_uris_take_no_query_fragment_or_parameters():
    roots = ["s3://bucket/clips"]
    for uri in (
        "s3://bucket/clips/a.mp4?endpoint_override=evil.example:9000&scheme=http",
        "s3://bucket/clips/a.mp4#x",
        "s3://bucket/clips/a.mp4;region=x",
        "s3://bucket/clips/a.mp4?",
    ):
        status, msg = _refused(uri, roots)
        assert status == 403 and "no query" in msg, uri
    for uri in ("s3://user:secret@bucket/clips/a.mp4", "s3://bucket:9000/clips/a.mp4"):
        assert _refused(uri, roots)[0] == 403, uri


def test_a_fifo_under_a_root_is_not_a_clip(tmp_path):
    os.mkfifo(tmp_path / "pipe.mp4")
    assert _refused(str(tmp_path / "pipe.mp4"), [str(tmp_path)])[0] == 404


def test_require_json_answers_415_before_reading_the_body():
    from diadem_ray.serve_limits import RequireJson

    mw = RequireJson(_echo, paths=("/score",))

    def run(ctype, path="/score"):
        headers = [] if ctype is None else [(b"content-type", ctype)]
        scope = {"type": "http", "method": "POST", "path": path, "headers": headers}
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(msg):
            sent.append(msg)

        asyncio.run(mw(scope, receive, send))
        return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])

    assert run(b"application/json")[0] == 200
    assert run(b"application/json; charset=utf-8")[0] == 200
    assert run(b"application/problem+json")[0] == 200
    status, body = run(b"text/plain")
    assert status == 415 and "text/plain" in json.loads(body)["detail"]
    assert run(None)[0] == 415
    assert run(b"text/plain", path="/caption")[0] == 200  # other paths decide for themselves
