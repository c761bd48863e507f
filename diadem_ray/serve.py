"""Ray Serve applications: the reward scorer over HTTP (``POST /score``), ``GET /healthz`` and the
OpenAPI schema (``/docs``, ``/openapi.json``), on 127.0.0.1 by default.

``/score`` runs the same code as ``diadem-ray eval`` (``rewards.benchmark.score_prediction``).
Every bad request gets a 4xx with a message naming the field — a body over the size limit 413,
malformed JSON or wrong types 422 — and a caption that cannot be scored 422 with the reason;
nothing reaches the replica as an unhandled exception.

The captioning endpoint (``POST /caption``) needs the policy models (issue #7) and is not served
yet.
"""

# No `from __future__ import annotations` here: FastAPI must see the request models defined inside
# build_app as real classes, not as unresolvable forward-reference strings.
from typing import Any, Dict, List, Optional

CAPTION_PENDING = "POST /caption needs the policy models of issue #7 and is not served yet"


def build_app(*, max_caption_chars: int = 100_000, max_dialogue_lines: int = 500, max_line_chars: int = 2_000,
              max_request_bytes: int = 8 << 20):
    """The FastAPI app with limits baked into its request schema (so they show in OpenAPI)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, model_validator

    from diadem_ray.rewards.benchmark import row_of, score_prediction
    from diadem_ray.rewards.extract import make_extractor
    from diadem_ray.rewards.speakers import JudgeError, make_judge

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        caption: Optional[str] = Field(None, max_length=max_caption_chars,
                                       description="free-form caption; run through the extractor")
        dialogue: Optional[List[str]] = Field(None, max_length=max_dialogue_lines,
                                              description='already extracted "speaker: utterance" lines')
        reference: List[str] = Field(..., max_length=max_dialogue_lines, description='reference "speaker: utterance" lines')
        extractor: str = Field("structured", pattern="^(structured|prose)$")
        speaker_judge: str = Field("exact", pattern="^(exact|embedding)$")

        @model_validator(mode="after")
        def one_hypothesis(self) -> "ScoreRequest":
            if (self.caption is None) == (self.dialogue is None):
                raise ValueError("give exactly one of 'caption' (text) or 'dialogue' (lines)")
            for name, lines in (("dialogue", self.dialogue or []), ("reference", self.reference)):
                for i, line in enumerate(lines):
                    if len(line) > max_line_chars:
                        raise ValueError(f"{name}[{i}] has {len(line)} characters; the limit is {max_line_chars}")
            return self

    class Group(BaseModel):
        dt_indices: List[int]
        gt_indices: List[int]
        score: float

    class ScoreResponse(BaseModel):
        asr_recall: float
        asr_precision: float
        asr_f1: float
        ref_recall: float
        ref_precision: float
        ref_f1: float
        dt_num: int
        gt_num: int
        groups: List[Group]
        clean_dt: List[List[str]]
        clean_gt: List[List[str]]

    app = FastAPI(title="diadem-ray", description="Dialogue caption scoring (DiaDemBench REF/ASR) and captioning.")
    extractors = {name: make_extractor(name) for name in ("structured", "prose")}
    judges: Dict[str, Any] = {"exact": make_judge("exact")}

    app.add_middleware(_BodyLimit, max_bytes=max_request_bytes)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        detail = [{"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": detail})

    @app.get("/healthz")
    async def healthz() -> Dict[str, Any]:
        return {"status": "ok", "endpoints": ["POST /score"], "not_served": [CAPTION_PENDING]}

    @app.post("/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest):  # scoring takes ~1 ms: no thread-pool hop
        judge = judges.get(req.speaker_judge)
        if judge is None:  # the embedding model loads on first use
            judge = judges.setdefault(req.speaker_judge, make_judge(req.speaker_judge))
        pred = {"pred": req.caption} if req.caption is not None else {"pred_dialogues": req.dialogue}
        try:
            result = score_prediction(pred, {"gt_dialogues": req.reference}, extract=extractors[req.extractor], judge=judge,
                                      max_caption_chars=max_caption_chars, max_lines=max_dialogue_lines)
        except (ValueError, JudgeError) as exc:
            return JSONResponse(status_code=422, content={"detail": f"could not score: {exc}"})
        row = row_of(result)
        row.update(asr_f1=result.asr_f1, ref_f1=result.ref_f1)
        row.pop("video_id", None)
        row.pop("error", None)
        return row

    return app


class _BodyLimit:
    """Plain ASGI middleware: 413 for a declared body over ``max_bytes`` (cheaper per request
    than Starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for key, value in scope.get("headers", ()):
                if key == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                    from starlette.responses import JSONResponse

                    response = JSONResponse(status_code=413, content={"detail": f"request body over {self.max_bytes} bytes"})
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def deploy(*, host: str = "127.0.0.1", port: int = 8000, num_cpus: float = 0.5, num_replicas: int = 1,
           max_ongoing_requests: int = 64, **limits: Any):
    """Start Serve on the connected Ray cluster and run the scorer app; returns the handle.

    ``max_ongoing_requests`` is high on purpose: a request costs about a millisecond of the
    replica's event loop, and with Serve's default (5) the router's back-off under 32 concurrent
    clients cut throughput several-fold on 2 cores."""
    from ray import serve

    app = build_app(**limits)

    @serve.deployment(ray_actor_options={"num_cpus": num_cpus}, num_replicas=num_replicas,
                      max_ongoing_requests=max_ongoing_requests)
    @serve.ingress(app)
    class DiademScorer:
        pass

    serve.start(http_options={"host": host, "port": port})
    return serve.run(DiademScorer.bind(), name="diadem", route_prefix="/")
