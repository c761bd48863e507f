"""The Serve app over real HTTP (127.0.0.1): POST /caption with an exported policy (upload, raw
bytes, allowed URI), POST /score, /healthz and OpenAPI; every bad request a 4xx, the replica alive."""

import json
import socket
import threading
import urllib.error
import urllib.request
import uuid

import pytest


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tiny_policy(out):
    """A random tiny LM with a tokenizer, exported as a tiny_av policy (what a run writes)."""
    from transformers import AutoModelForCausalLM

    from diadem_ray.models.policy import PolicyMeta, write_policy
    from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION
    from diadem_ray.models.tiny_lm import build_tiny_lm

    src = build_tiny_lm(out / "src", with_tokenizer=True)
    model = AutoModelForCausalLM.from_pretrained(str(src), local_files_only=True)
    meta = PolicyMeta(
        family="tiny_av",
        policy_version=7,
        stage="grpo_stage2",
        learner_step=20,
        run="t",
        frontend_version=FRONTEND_VERSION,
        frames_per_clip=16,
        sample_rate_hz=16000,
        max_prompt_tokens=256,
        max_new_tokens=24,
    )
    return write_policy(
        out / "run" / "policy", list(model.state_dict().items()), source_model_path=src, meta=meta
    ).parent


def _long_clip(path, seconds=70):
    """A tiny silent video longer than the server's duration limit."""
    import av
    import numpy as np

    with av.open(str(path), "w") as box:
        vs = box.add_stream("libx264", rate=1)
        vs.width = vs.height = 32
        vs.pix_fmt = "yuv420p"
        for i in range(seconds):
            frame = av.VideoFrame.from_ndarray(np.full((32, 32, 3), i % 255, np.uint8), format="rgb24")
            for pkt in vs.encode(frame):
                box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)


def _big_frames_clip(path, width=2048, height=1152):
    """One frame over the server's default pixel limit (1920 x 1080)."""
    import av
    import numpy as np

    with av.open(str(path), "w") as box:
        vs = box.add_stream("mpeg4", rate=1)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        for pkt in vs.encode(av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")):
            box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    from ray import serve

    from diadem_ray.data.synth import synthesize
    from diadem_ray.serve import deploy

    tmp = tmp_path_factory.mktemp("serve")
    run_dir = _tiny_policy(tmp)
    clips = synthesize(tmp / "clips", 1, seed=11, workers=1, progress=False)
    _long_clip(tmp / "clips" / "long.mp4")
    (tmp / "outside.mp4").write_bytes(open(clips[0].video_uri, "rb").read())
    port = _free_port()
    _big_frames_clip(tmp / "clips" / "big.mp4")
    deploy(
        host="127.0.0.1",
        port=port,
        policy=str(run_dir),
        num_cpus=0.25,
        max_caption_chars=5_000,
        max_dialogue_lines=500,
        max_line_chars=500,
        max_request_bytes=200_000,
        max_clip_bytes=2_000_000,
        max_clip_duration_s=60.0,
        allowed_uri_roots=[str(tmp / "clips")],
        max_batch_size=4,
        batch_wait_timeout_s=1.5,
    )
    yield {"url": f"http://127.0.0.1:{port}", "clip": clips[0].video_uri, "root": tmp / "clips", "tmp": tmp}
    serve.shutdown()


@pytest.fixture(scope="module")
def base_url(served):
    return served["url"]


def call(url, path, body=None, raw=None, ctype="application/json"):
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(
        url + path, data=data, headers={"Content-Type": ctype}, method="POST" if data is not None else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def multipart(data, name="clip.mp4"):
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_caption_upload_bytes_and_uri_agree_and_batch(served):
    """The three ways to send a clip, at once: same greedy caption, generated in shared batches."""
    url, clip = served["url"], served["clip"]
    data = open(clip, "rb").read()
    status, health = call(url, "/healthz")
    assert status == 200 and "POST /caption" in health["endpoints"] and health["model"]["policy_version"] == 7
    body, ctype = multipart(data)
    requests = {
        "upload": dict(raw=body, ctype=ctype),
        "bytes": dict(raw=data, ctype="video/mp4"),
        "uri": dict(body={"uri": clip}),
    }
    results = {}
    threads = [
        threading.Thread(target=lambda k=k, kw=kw: results.__setitem__(k, call(url, "/caption", **kw)))
        for k, kw in requests.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {k: s for k, (s, _) in results.items()} == {"upload": 200, "bytes": 200, "uri": 200}, results
    up = results["upload"][1]
    assert isinstance(up["caption"], str) and isinstance(up["dialogue"], list)
    assert up["policy_version"] == 7 and up["model"] == {"family": "tiny_av", "run": "t", "stage": "grpo_stage2"}
    assert up["duration_s"] > 1.0
    assert len({b["caption"] for _, b in results.values()}) == 1  # greedy: one clip, one caption
    assert max(b["batch_size"] for _, b in results.values()) >= 2  # Serve's dynamic batching joined requests


def test_bad_clips_get_4xx_with_reason(served):
    url, root, tmp = served["url"], served["root"], served["tmp"]
    cases = [
        (dict(body={"uri": str(tmp / "outside.mp4")}), 403, "outside the allowed roots"),
        (dict(body={"uri": str(root / ".." / "outside.mp4")}), 403, "outside the allowed roots"),
        (dict(body={"uri": "s3://bucket/clips/a.mp4"}), 403, "outside the allowed roots"),
        (dict(body={"uri": str(root / "missing.mp4")}), 404, "no such clip"),
        (dict(body={"path": "x"}), 422, '{\\"uri\\"'),
        (dict(body={"uri": 5}), 422, "uri"),
        (dict(raw=b"{nope"), 422, "not valid JSON"),
        (dict(raw=b"\x00" * 500, ctype="video/mp4"), 422, "cannot decode the clip"),
        (dict(raw=b"", ctype="video/mp4"), 422, "empty"),
        (dict(raw=b"\x00" * 2_100_000, ctype="video/mp4"), 413, "bytes"),
        (dict(raw=b"hello", ctype="text/plain"), 415, "text/plain"),
        (dict(body={"uri": str(root / "long.mp4")}), 413, "the limit is 60 s"),
        (dict(body={"uri": str(root / "big.mp4")}), 413, "serve.max_frame_pixels"),
        (dict(body={"uri": str(root) + "/a\u0000.mp4"}), 422, "control character"),
        (dict(body={"uri": "s3://bucket/clips/a.mp4?endpoint_override=127.0.0.1:9&scheme=http"}), 403, "no query"),
        (dict(raw=b'{"uri": "\\ud800"}'), 422, "invalid Unicode"),
        (dict(raw=b"[" * 100_000), 422, "not valid JSON"),
    ]
    for kw, want, needle in cases:
        status, out = call(url, "/caption", **kw)
        assert status == want and needle in json.dumps(out), (kw.get("body"), status, out)
    body, ctype = multipart(b"not a video")
    status, out = call(url, "/caption", raw=body.replace(b'name="file"', b'name="clip"'), ctype=ctype)
    assert status == 422 and "field named 'file'" in out["detail"]
    status, _ = call(url, "/healthz")  # the replica survived all of it
    assert status == 200


REF = ["Anna: Where were you last night?", "Ben: At the office."]


def test_health_and_openapi(base_url):
    status, body = call(base_url, "/healthz")
    assert status == 200 and body["status"] == "ok" and "POST /score" in body["endpoints"]
    status, spec = call(base_url, "/openapi.json")
    assert status == 200 and {"/score", "/caption", "/healthz"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/caption"]["post"]["requestBody"]["content"]


def test_score_caption_and_lines_same_as_eval(base_url):
    from diadem_ray.rewards.metrics import score_dialogue

    status, body = call(
        base_url, "/score", {"caption": 'Anna: "Where were you last night?"\nBen: "At home."', "reference": REF}
    )
    want = score_dialogue(["Anna: Where were you last night?", "Ben: At home."], REF)
    assert status == 200
    assert body["asr_recall"] == pytest.approx(want.asr_recall) and body["ref_f1"] == pytest.approx(want.ref_f1)
    assert body["groups"][0] == {"dt_indices": [0], "gt_indices": [0], "score": 1.0}
    status, body = call(base_url, "/score", {"dialogue": REF, "reference": REF})
    assert status == 200 and body["asr_f1"] == pytest.approx(1.0)
    status, body = call(
        base_url,
        "/score",
        {"caption": '"Hi," says the old man.', "reference": ["the old man: Hi"], "extractor": "prose"},
    )
    assert status == 200 and body["ref_recall"] == 1.0


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"reference": REF}, "exactly one of 'caption'"),
        ({"caption": "x", "dialogue": [], "reference": REF}, "exactly one of 'caption'"),
        ({"caption": 5, "reference": REF}, "caption"),
        ({"caption": "x"}, "reference"),
        ({"caption": "x" * 5001, "reference": REF}, "caption"),
        ({"dialogue": ["A: x"] * 501, "reference": REF}, "dialogue"),
        ({"dialogue": ["A: " + "x" * 600], "reference": REF}, "dialogue[0] has 603 characters"),
        ({"caption": "x", "reference": REF, "speaker_judge": "llm"}, "speaker_judge"),
        ({"caption": "x", "reference": REF, "surprise": 1}, "surprise"),
    ],
)
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


def test_healthz_answers_while_the_worst_allowed_score_request_runs(base_url):
    """The largest alignment the default work limit lets through (one speaker, unrelated lines:
    about a second on a 2-core box) runs in the scoring thread; /healthz answers meanwhile."""
    import random
    import time

    rng = random.Random(7)
    make = lambda: ["A: " + "".join(rng.choice("abcdefghij") for _ in range(40)) for _ in range(160)]  # noqa: E731
    body = {"dialogue": make(), "reference": make()}
    out = {}

    def big():
        t0 = time.perf_counter()
        out["status"], _ = call(base_url, "/score", body)
        out["seconds"] = time.perf_counter() - t0

    t = threading.Thread(target=big)
    t.start()
    time.sleep(0.15)
    t0 = time.perf_counter()
    status, _ = call(base_url, "/healthz")
    health_s = time.perf_counter() - t0
    t.join()
    assert out["status"] == 200 and status == 200
    assert health_s < 1.0 and health_s < out["seconds"], (health_s, out)
