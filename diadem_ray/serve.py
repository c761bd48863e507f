"""Ray Serve application: the trained captioner (``POST /caption``), the reward scorer
(``POST /score``), ``GET /healthz`` and the OpenAPI schema (``/docs``, ``/openapi.json``); on
127.0.0.1 by default.

``/caption`` takes a clip three ways — a multipart upload (field ``file``), the raw bytes
(``Content-Type: video/*`` or ``application/octet-stream``), or JSON ``{"uri": …}`` naming a file
under one of the configured ``allowed_uri_roots`` — decodes it, runs the policy's front-end, and
generates with the exported policy (:mod:`diadem_ray.models.policy`); generation is batched with
Serve's dynamic batching. ``/score`` runs the same code as ``diadem-ray eval``.

Every bad request gets a 4xx naming the problem, never a 500: 413 for a body, clip or duration
over the limit, 415 for an unsupported content type, 422 for malformed JSON, wrong types or a clip
that cannot be decoded, 403 for a URI outside the allowed roots, 404 for one that does not exist,
503 for ``/caption`` when no policy was loaded.
"""

# No `from __future__ import annotations` here: FastAPI must see the request models defined inside
# build_app as real classes, not as unresolvable forward-reference strings.
import os
import posixpath
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

from diadem_ray.serve_limits import BodyLimit, UriRefused, check_uri
from diadem_ray.types import Prompt

NO_POLICY = "no captioner loaded: start the server with --checkpoint runs/<name> (a run that finished a training stage)"

_CAPTION_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            },
            "video/mp4": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["uri"],
                    "additionalProperties": False,
                    "properties": {"uri": {"type": "string", "description": "a clip under serve.allowed_uri_roots"}},
                }
            },
        },
    }
}


class Captioner:
    """Clip → caption for one exported policy: decode (PyAV) → the family's front-end → the
    engine (vLLM, or transformers with ``engine="hf"``), greedy, as the run evaluated it."""

    def __init__(self, policy: str, *, engine: str = "vllm", cpu_threads: int = 1, max_batch_size: int = 8):
        from diadem_ray.actors.rollout import RolloutWorker
        from diadem_ray.models import tiny_av
        from diadem_ray.models.policy import SERVED, read_policy
        from diadem_ray.models.tiny_av_frontend import FRONTEND_VERSION, FrontEnd
        from diadem_ray.models.tokens import Tokens
        from diadem_ray.rewards.extract import extract_structured

        self.dir, self.meta = read_policy(policy, SERVED)
        self.warnings: List[str] = []
        if self.meta.frontend_version != FRONTEND_VERSION:
            self.warnings.append(
                f"policy trained with front-end version {self.meta.frontend_version}, serving with "
                f"{FRONTEND_VERSION}: its evidence text may differ from training"
            )
        m = self.meta
        self.engine = RolloutWorker(
            model_path=str(self.dir),
            backend=engine,
            max_num_seqs=max_batch_size,
            max_model_len=m.max_prompt_tokens + m.max_new_tokens + 8,
        )
        self.engine.setup()
        self.engine.policy_version = m.policy_version
        self.frontend = FrontEnd(cpu_threads=cpu_threads)
        self._frontend_lock = threading.Lock()  # one Whisper model: one clip at a time (also outside Serve)
        self.tokens = Tokens(self.dir)
        self._prompt_text = tiny_av.prompt_text
        self._extract = extract_structured

    def header(self, uri: str) -> tuple:
        """``(seconds, width, height)`` from the clip's header, before anything is decoded."""
        from diadem_ray.data.decode import frame_size, probe

        return (probe(uri), *frame_size(uri))

    def evidence(self, uri: str, max_frame_pixels: Optional[int] = None) -> str:
        """The front-end's evidence text for one clip; raises ``DecodeError`` (``FrameTooLarge``
        for a decoded frame over ``max_frame_pixels``)."""
        from diadem_ray.data.decode import decode_clip

        media = decode_clip(
            uri,
            max_frames=self.meta.frames_per_clip,
            sample_rate_hz=self.meta.sample_rate_hz,
            max_frame_pixels=max_frame_pixels,
        )
        with self._frontend_lock:
            return self.frontend.evidence(media.frames, media.frame_times_s, media.audio, media.sample_rate_hz).text()

    def captions(self, evidence: Sequence[str]) -> List[Dict[str, Any]]:
        """One greedy caption per evidence text, with its extracted ``speaker: words`` lines."""
        prompts = [
            Prompt(str(i), tuple(self.tokens.prompt(self._prompt_text(e))[: self.meta.max_prompt_tokens]))
            for i, e in enumerate(evidence)
        ]
        out = self.engine.generate(
            prompts, samples_per_prompt=1, max_new_tokens=self.meta.max_new_tokens, temperature=0.0
        )
        return [
            {
                "caption": ro.text,
                "dialogue": [t.line() for t in self._extract(ro.text)],
                "policy_version": ro.policy_version,
                "finish_reason": ro.finish_reason,
            }
            for ro in out
        ]


#: A /score request with at most this many characters and lines on each side is scored on the
#: event loop (at most a few milliseconds); any other in the scoring thread, so /healthz and small
#: requests stay prompt while a large one is aligned.
INLINE_SCORE_CHARS = 4_000
INLINE_SCORE_LINES = 32


def _bad_unicode(value: str) -> Optional[int]:
    """Index of the first lone surrogate in ``value`` (text that cannot be written as UTF-8)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def build_app(
    *,
    max_caption_chars: int = 100_000,
    max_dialogue_lines: int = 500,
    max_line_chars: int = 2_000,
    max_request_bytes: int = 8 << 20,
    max_clip_bytes: int = 64 << 20,
    max_align_work: int = 6_000_000,
    max_judge_speakers: int = 64,
    score_threads: int = 1,
):
    """The FastAPI app with ``/score``; limits are baked into its request schema (so they show in
    OpenAPI). ``deploy`` adds ``/caption`` and ``/healthz`` as methods of the Serve replica.

    Work per request is bounded: the caption parsers are linear, the alignment stops past
    ``max_align_work`` units and the embedding judge past ``max_judge_speakers`` descriptions (413
    naming the limit; docs/rewards.md has the measured cost of a unit). Requests over
    :data:`INLINE_SCORE_CHARS` characters or :data:`INLINE_SCORE_LINES` lines are scored on
    ``score_threads`` worker threads, off the event loop."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

    from diadem_ray.rewards.align import AlignmentTooLarge
    from diadem_ray.rewards.benchmark import OverLimit, row_of, score_prediction
    from diadem_ray.rewards.extract import make_extractor
    from diadem_ray.rewards.speakers import JudgeError, JudgeTooLarge, make_judge
    from diadem_ray.serve_limits import RequireJson, printable

    class ScoreRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        caption: Optional[str] = Field(
            None, max_length=max_caption_chars, description="free-form caption; run through the extractor"
        )
        dialogue: Optional[List[str]] = Field(
            None, max_length=max_dialogue_lines, description='already extracted "speaker: utterance" lines'
        )
        reference: List[str] = Field(
            ..., max_length=max_dialogue_lines, description='reference "speaker: utterance" lines'
        )
        extractor: str = Field("structured", pattern="^(structured|prose)$")
        speaker_judge: str = Field("exact", pattern="^(exact|embedding)$")

        @field_validator("caption", "dialogue", "reference")
        @classmethod
        def valid_unicode(cls, value: Any) -> Any:
            for i, text in enumerate([value] if isinstance(value, str) else value or []):
                at = _bad_unicode(text)
                if at is not None:
                    where = f"line {i}, " if not isinstance(value, str) else ""
                    raise ValueError(
                        f"{where}character {at} is a lone surrogate (U+{ord(text[at]):04X}), not valid Unicode; "
                        "send UTF-8 text"
                    )
            return value

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

    app = FastAPI(title="diadem-ray", description="Dialogue captioning and caption scoring (DiaDemBench REF/ASR).")
    extractors = {name: make_extractor(name) for name in ("structured", "prose")}
    judges: Dict[str, Any] = {"exact": make_judge("exact")}
    pool: List[ThreadPoolExecutor] = []  # made on first use: the app is pickled into each replica

    app.add_middleware(RequireJson, paths=("/score",))
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes, per_path={"/caption": max_clip_bytes + (64 << 10)})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        detail = [
            {
                "field": printable(".".join(str(p) for p in e.get("loc", ()))),
                "message": printable(str(e.get("msg", ""))),
            }
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content={"detail": detail})

    def score_now(req: ScoreRequest) -> Any:
        judge = judges.get(req.speaker_judge)
        if judge is None:  # the embedding model loads on first use
            judge = judges.setdefault(req.speaker_judge, make_judge(req.speaker_judge, max_texts=max_judge_speakers))
        pred = {"pred": req.caption} if req.caption is not None else {"pred_dialogues": req.dialogue}
        try:
            result = score_prediction(
                pred,
                {"gt_dialogues": req.reference},
                extract=extractors[req.extractor],
                judge=judge,
                max_caption_chars=max_caption_chars,
                max_lines=max_dialogue_lines,
                max_align_work=max_align_work,
            )
        except AlignmentTooLarge as exc:
            return JSONResponse(
                status_code=413,
                content={"detail": f"{exc} (serve.max_align_work); send fewer or shorter lines, or split the dialogue"},
            )
        except JudgeTooLarge as exc:
            return JSONResponse(status_code=413, content={"detail": f"{exc} (serve.max_judge_speakers)"})
        except OverLimit as exc:  # a caption that extracts to more lines than the limit
            name = "serve.max_dialogue_lines" if exc.limit == "max_lines" else "serve.max_caption_chars"
            return JSONResponse(status_code=413, content={"detail": f"{exc} ({name})"})
        except (ValueError, JudgeError) as exc:
            return JSONResponse(status_code=422, content={"detail": f"could not score: {exc}"})
        row = row_of(result)
        row.update(asr_f1=result.asr_f1, ref_f1=result.ref_f1)
        row.pop("video_id", None)
        row.pop("error", None)
        return row

    @app.post("/score", response_model=ScoreResponse)
    async def score(req: ScoreRequest):
        hyp_lines = len(req.dialogue) if req.dialogue is not None else (req.caption or "").count("\n") + 1
        size = len(req.caption or "") + sum(map(len, req.dialogue or [])) + sum(map(len, req.reference))
        if size <= INLINE_SCORE_CHARS and hyp_lines <= INLINE_SCORE_LINES and len(req.reference) <= INLINE_SCORE_LINES:
            return score_now(req)
        if not pool:
            pool.append(ThreadPoolExecutor(max(1, score_threads), thread_name_prefix="score"))
        return await asyncio.get_running_loop().run_in_executor(pool[0], score_now, req)

    return app


def deploy(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    policy: Optional[str] = None,
    engine: str = "vllm",
    num_cpus: float = 0.5,
    num_replicas: int = 1,
    max_ongoing_requests: int = 64,
    max_batch_size: int = 8,
    batch_wait_timeout_s: float = 0.05,
    max_clip_duration_s: float = 120.0,
    allowed_uri_roots: Sequence[str] = (),
    max_frame_pixels: int = 1920 * 1080,
    max_decoded_bytes: int = 512 << 20,
    **limits: Any,
):
    """Start Serve on the connected Ray cluster and run the app; returns the handle. With
    ``policy`` (a run directory or its ``policy/``) each replica loads the captioner.

    ``max_ongoing_requests`` is high on purpose: a ``/score`` request costs about a millisecond of
    the replica's event loop, and with Serve's default (5) the router's back-off under 32
    concurrent clients cut throughput several-fold on 2 cores. Captioning work runs in threads
    off the event loop, so ``/score`` and ``/healthz`` stay responsive while clips are captioned."""
    import asyncio

    from fastapi import Request
    from fastapi.responses import JSONResponse
    from ray import serve

    if policy is not None:  # fail here, in the caller, with the path named — not inside a replica
        from diadem_ray.models.policy import SERVED, read_policy

        policy = str(read_policy(policy, SERVED)[0])
    max_clip_bytes = int(limits.get("max_clip_bytes", 64 << 20))
    app = build_app(**limits)
    roots = [r for r in allowed_uri_roots]

    @serve.deployment(
        ray_actor_options={"num_cpus": num_cpus}, num_replicas=num_replicas, max_ongoing_requests=max_ongoing_requests
    )
    @serve.ingress(app)
    class Diadem:
        def __init__(self) -> None:
            from concurrent.futures import ThreadPoolExecutor

            threads = max(1, int(num_cpus))
            self.captioner = (
                Captioner(policy, engine=engine, cpu_threads=threads, max_batch_size=max_batch_size) if policy else None
            )
            # One thread for decoding + the front-end (one Whisper model), one for the engine: neither
            # waits for the other's thread, so clips queue for generation while a batch generates.
            self._frontend = ThreadPoolExecutor(1, thread_name_prefix="frontend")
            self._engine = ThreadPoolExecutor(1, thread_name_prefix="engine")

        @app.get("/healthz")
        async def healthz(self) -> Dict[str, Any]:
            body: Dict[str, Any] = {"status": "ok", "endpoints": ["POST /score"]}
            if self.captioner is None:
                body["not_served"] = [f"POST /caption: {NO_POLICY}"]
            else:
                m = self.captioner.meta
                body["endpoints"].append("POST /caption")
                body["model"] = {
                    "family": m.family,
                    "run": m.run,
                    "stage": m.stage,
                    "policy_version": m.policy_version,
                    "path": str(self.captioner.dir),
                    "warnings": self.captioner.warnings,
                }
            return body

        @app.post("/caption", openapi_extra=_CAPTION_BODY)
        async def caption(self, request: Request):
            if self.captioner is None:
                return JSONResponse(status_code=503, content={"detail": NO_POLICY})
            t0 = time.perf_counter()
            try:
                uri, cleanup = await self._clip_of(request)
            except _Refused as exc:
                return JSONResponse(status_code=exc.status, content={"detail": str(exc)})
            try:
                from diadem_ray.data.decode import DecodeError, FrameTooLarge

                loop = asyncio.get_running_loop()
                try:
                    seconds, width, height = await loop.run_in_executor(self._frontend, self.captioner.header, uri)
                    too_large = _over_media_limits(
                        seconds,
                        width,
                        height,
                        frames=self.captioner.meta.frames_per_clip,
                        max_seconds=max_clip_duration_s,
                        max_pixels=max_frame_pixels,
                        max_bytes=max_decoded_bytes,
                    )
                    if too_large:
                        return JSONResponse(status_code=413, content={"detail": too_large})
                    evidence = await loop.run_in_executor(
                        self._frontend, self.captioner.evidence, uri, max_frame_pixels
                    )
                except FrameTooLarge as exc:
                    return JSONResponse(status_code=413, content={"detail": f"{exc} (serve.max_frame_pixels)"})
                except DecodeError as exc:
                    return JSONResponse(status_code=422, content={"detail": f"cannot decode the clip: {exc}"})
                except Exception as exc:  # a clip that breaks the front-end is the client's data, not a server fault
                    return JSONResponse(
                        status_code=422,
                        content={"detail": f"the front-end could not read the clip ({type(exc).__name__}: {exc})"},
                    )
            finally:
                cleanup()
            out = await self._generate(evidence)
            m = self.captioner.meta
            return {
                **out,
                "model": {"family": m.family, "run": m.run, "stage": m.stage},
                "duration_s": seconds,
                "seconds": time.perf_counter() - t0,
            }

        @serve.batch(max_batch_size=max_batch_size, batch_wait_timeout_s=batch_wait_timeout_s)
        async def _generate(self, evidence: List[str]) -> List[Dict[str, Any]]:
            if self.captioner is None:  # the caption route answers 503 before it batches anything
                raise RuntimeError("no captioning policy is loaded")
            out = await asyncio.get_running_loop().run_in_executor(self._engine, self.captioner.captions, evidence)
            return [dict(o, batch_size=len(evidence)) for o in out]

        async def _clip_of(self, request: Request):
            """(local path of the clip, cleanup) from an upload, raw bytes or an allowed URI."""
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if ctype == "application/json":
                import json

                try:
                    body = json.loads(await request.body())
                except (ValueError, RecursionError) as exc:  # also nesting too deep, or an integer too long
                    raise _Refused(422, f"body is not valid JSON ({type(exc).__name__}: {str(exc)[:200]})") from exc
                if not isinstance(body, dict) or set(body) != {"uri"} or not isinstance(body["uri"], str):
                    raise _Refused(
                        422,
                        'JSON body must be exactly {"uri": "<clip URI>"}; to send the clip itself, '
                        "upload it as multipart field 'file' or as the raw body with Content-Type video/mp4",
                    )
                try:
                    return check_uri(body["uri"], roots), lambda: None
                except UriRefused as exc:
                    raise _Refused(exc.status, str(exc)) from exc
            if ctype == "multipart/form-data":
                form = await request.form(max_files=1, max_fields=1)
                upload = form.get("file")
                if upload is None or isinstance(upload, str):
                    raise _Refused(422, "multipart body needs the clip in a file field named 'file'")
                data = await upload.read(max_clip_bytes + 1)
                name = posixpath.basename(upload.filename or "clip.mp4")
            elif ctype.startswith("video/") or ctype == "application/octet-stream":
                data = await request.body()
                name = "clip." + (ctype.split("/")[1] if ctype.startswith("video/") else "mp4")
            else:
                raise _Refused(
                    415,
                    f"Content-Type {ctype or '(none)'!r} not accepted; send multipart/form-data (field 'file'), "
                    'video/* bytes, or application/json {"uri": …}',
                )
            if len(data) > max_clip_bytes:
                raise _Refused(413, f"clip has more than {max_clip_bytes} bytes (serve.max_clip_bytes)")
            if not data:
                raise _Refused(422, "the clip is empty")
            suffix = os.path.splitext(name)[1][:8] or ".mp4"
            fd, path = tempfile.mkstemp(prefix="diadem-clip-", suffix=suffix)
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            return path, lambda: os.unlink(path)

    serve.start(http_options={"host": host, "port": port})
    return serve.run(Diadem.bind(), name="diadem", route_prefix="/")  # type: ignore[attr-defined]


def _over_media_limits(
    seconds: float, width: int, height: int, *, frames: int, max_seconds: float, max_pixels: int, max_bytes: int
) -> Optional[str]:
    """Why a clip's header puts it over the serving limits, or ``None``."""
    if seconds > max_seconds:
        return f"clip is {seconds:.1f} s long; the limit is {max_seconds:g} s (serve.max_clip_duration_s)"
    if width * height > max_pixels:
        return (
            f"frames are {width}x{height} = {width * height:,} pixels; the limit is {max_pixels:,} "
            "(serve.max_frame_pixels)"
        )
    decoded = frames * width * height * 3
    if decoded > max_bytes:
        return (
            f"{frames} decoded frames of {width}x{height} take {decoded:,} bytes; the limit is {max_bytes:,} "
            "(serve.max_decoded_bytes)"
        )
    return None


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
