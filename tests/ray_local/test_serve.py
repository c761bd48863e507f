"""POST /score, /healthz and OpenAPI over real HTTP against a running Ray Serve app (127.0.0.1)."""

import json
import socket
import urllib.error
import urllib.request

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def base_url(ray_local):
    from ray import serve

    from diadem_ray.serve import deploy

    port = _free_port()
    deploy(host="127.0.0.1", port=port, num_cpus=0.25, max_caption_chars=5_000, max_dialogue_lines=50,
           max_line_chars=500, max_request_bytes=200_000)
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


def call(url, path, body=None, raw=None):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"},
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


REF = ["Anna: Where were you last night?", "Ben: At the office."]


def test_health_and_openapi(base_url):
    status, body = call(base_url, "/healthz")
    assert status == 200 and body["status"] == "ok" and "POST /score" in body["endpoints"]
    status, spec = call(base_url, "/openapi.json")
    assert status == 200 and "/score" in spec["paths"]


def test_score_caption_and_lines_same_as_eval(base_url):
    from diadem_ray.rewards.metrics import score_dialogue

    status, body = call(base_url, "/score", {"caption": 'Anna: "Where were you last night?"\nBen: "At home."', "reference": REF})
    want = score_dialogue(["Anna: Where were you last night?", "Ben: At home."], REF)
    assert status == 200
    assert body["asr_recall"] == pytest.approx(want.asr_recall) and body["ref_f1"] == pytest.approx(want.ref_f1)
    assert body["groups"][0] == {"dt_indices": [0], "gt_indices": [0], "score": 1.0}
    status, body = call(base_url, "/score", {"dialogue": REF, "reference": REF})
    assert status == 200 and body["asr_f1"] == pytest.approx(1.0)
    status, body = call(base_url, "/score", {"caption": '"Hi," says the old man.', "reference": ["the old man: Hi"],
                                             "extractor": "prose"})
    assert status == 200 and body["ref_recall"] == 1.0


@pytest.mark.parametrize("body,needle", [
    ({"reference": REF}, "exactly one of 'caption'"),
    ({"caption": "x", "dialogue": [], "reference": REF}, "exactly one of 'caption'"),
    ({"caption": 5, "reference": REF}, "caption"),
    ({"caption": "x"}, "reference"),
    ({"caption": "x" * 5001, "reference": REF}, "caption"),
    ({"dialogue": ["A: x"] * 51, "reference": REF}, "dialogue"),
    ({"dialogue": ["A: " + "x" * 600], "reference": REF}, "dialogue[0] has 603 characters"),
    ({"caption": "x", "reference": REF, "speaker_judge": "llm"}, "speaker_judge"),
    ({"caption": "x", "reference": REF, "surprise": 1}, "surprise"),
])
def test_bad_requests_get_4xx_with_reason(base_url, body, needle):
    status, out = call(base_url, "/score", body)
    assert status == 422
    assert needle in json.dumps(out)


def test_malformed_and_oversized_bodies(base_url):
    status, out = call(base_url, "/score", raw=b"{not json")
    assert status == 422
    status, out = call(base_url, "/score", raw=json.dumps({"caption": "x" * 300_000, "reference": REF}).encode())
    assert status == 413 and "200000 bytes" in out["detail"]
    status, _ = call(base_url, "/healthz")  # the replica survived all of it
    assert status == 200
