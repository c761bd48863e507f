"""/score under hostile input, without Ray (the FastAPI app that Serve runs): never a 500, a 4xx
naming the problem, bounded work, and a well-formed request answered the same afterwards."""

import asyncio
import json
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diadem_ray.rewards.metrics import score_dialogue
from diadem_ray.serve import build_app

REF = ["Anna: Where were you last night?", "Ben: At the office."]
GOOD = {"caption": 'Anna: "Where were you last night?"\nBen: "At home."', "reference": REF}


@pytest.fixture(scope="module")
def client():
    from fastapi.testclient import TestClient

    with TestClient(build_app(), raise_server_exceptions=False) as c:
        yield c


def post(client, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else json.dumps(body).encode()
    return client.post("/score", content=data, headers={"content-type": ctype})


def test_good_request_scores_as_eval(client):
    r = post(client, GOOD)
    want = score_dialogue(["Anna: Where were you last night?", "Ben: At home."], REF)
    assert r.status_code == 200 and r.json()["asr_f1"] == pytest.approx(want.asr_f1)


@pytest.mark.parametrize(
    "raw,ctype,status,needle",
    [
        (json.dumps(GOOD).encode(), "text/plain", 415, "text/plain"),
        (json.dumps(GOOD).encode(), "", 415, "(none)"),
        (b'{"dialogue": ["\\ud800: hi"], "reference": ["A: hi"]}', "application/json", 422, "lone surrogate"),
        (b'{"caption": "x", "reference": ["A: \\udfff"]}', "application/json", 422, "lone surrogate"),
        (b'{"\\ud800": 1, "caption": "x", "reference": []}', "application/json", 422, "valid string"),
        (b"[" * 100_000, "application/json", 400, "parsing"),
        (b'{"caption": "x", "reference": [], "n": 1' + b"1" * 5000 + b"}", "application/json", 400, "parsing"),
    ],
)
def test_hostile_bodies_get_a_4xx_naming_the_problem(client, raw, ctype, status, needle):
    r = post(client, raw=raw, ctype=ctype)
    assert r.status_code == status and needle in r.text, r.text


def _worst(lines, chars, seed=7):
    """One speaker, unrelated lines: nothing prunes the alignment's merge search."""
    import random

    rng = random.Random(seed)
    make = lambda: ["A: " + "".join(rng.choice("abcdefghij") for _ in range(chars)) for _ in range(lines)]  # noqa: E731
    return {"dialogue": make(), "reference": make()}


def test_work_over_the_limits_is_refused_with_the_limit_named(client):
    r = post(client, _worst(60, 1000))
    assert r.status_code == 413 and "serve.max_align_work" in r.text
    many = {
        "dialogue": [f"person {i}: hello there" for i in range(100)],
        "reference": [f"someone {i}: hello there" for i in range(100)],
        "speaker_judge": "embedding",
    }
    r = post(client, many)
    assert r.status_code == 413 and "serve.max_judge_speakers" in r.text
    assert post(client, GOOD).json() == post(client, GOOD).json()


def test_caption_parsing_is_bounded_at_the_caption_limit(client):
    t0 = time.perf_counter()
    r = post(client, {"caption": "0:01 - 0:02" + " " * 99_980 + "x", "reference": REF})
    assert r.status_code == 200 and time.perf_counter() - t0 < 5.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
hostile_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=200)
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"caption": hostile_text, "reference": st.lists(hostile_text, max_size=5)},
        optional={
            "extractor": st.sampled_from(["structured", "prose", "x"]),
            "speaker_judge": st.sampled_from(["exact", "llm"]),
        },
    ),
    st.fixed_dictionaries(
        {"dialogue": st.lists(hostile_text, max_size=5), "reference": st.lists(hostile_text, max_size=5)}
    ),
)


@settings(max_examples=150, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=bodies,
    ctype=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "text/plain",
            "application/x-www-form-urlencoded",
            "application/problem+json",
        ]
    ),
)
def test_generated_hostile_requests_never_get_a_500(client, body, ctype):
    raw = json.dumps(body, ensure_ascii=True).encode()  # ensure_ascii: lone surrogates travel as \\udXXX escapes
    r = post(client, raw=raw, ctype=ctype)
    assert r.status_code < 500, (body, r.status_code, r.text)
    assert r.status_code in (200, 400, 413, 415, 422)
    json.loads(r.text)  # every answer is JSON
    assert post(client, GOOD).json() == _good_answer(client)  # and a well-formed request is answered as before


_GOOD_ANSWER: dict = {}


def _good_answer(client):
    if not _GOOD_ANSWER:
        _GOOD_ANSWER.update(post(client, GOOD).json())
    return _GOOD_ANSWER


def test_good_request_answers_the_same_after_the_battery(client):
    first = post(client, GOOD).json()
    for raw in (b"[" * 50_000, b'{"caption": "\\ud800", "reference": []}', json.dumps(_worst(60, 1000)).encode()):
        post(client, raw=raw)
    assert post(client, GOOD).json() == first


def test_large_requests_are_scored_off_the_event_loop():
    """While the largest request the work limit allows is scored, small requests on the same app
    (same event loop) are answered at once: their latency is a small fraction of the big one's."""
    import httpx

    app = build_app()
    big_body = _worst(160, 40)  # close under the default max_align_work: about a second of alignment

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            t0 = time.perf_counter()

            async def big():
                r = await c.post("/score", json=big_body)
                return r.status_code, time.perf_counter() - t0

            async def small():  # sent while the big one is being scored
                await asyncio.sleep(0.2)
                r = await c.post("/score", json=GOOD)
                return r.status_code, time.perf_counter() - t0

            return await asyncio.gather(big(), small())

    (big_status, big_done), (small_status, small_done) = asyncio.run(run())
    assert big_status == 200 and small_status == 200
    assert big_done > 0.6, big_done  # the big request did real work
    assert small_done < 0.5 * big_done, (small_done, big_done)  # scored on the loop, it would finish after the big one
