"""Annotating one video: decode → words → segments → shots → faces → dialogues → speakers → rows.

:class:`Annotator` holds the models (Whisper, the voice encoder, the face finder) and turns one
video into zero or more dialogue clips (:class:`~diadem_ray.types.Clip`, speakers named
``SPEAKER_1``, ``SPEAKER_2`` … by first appearance in each dialogue), or a reason for skipping it.
Each dialogue gets a confidence in [0, 1]: Whisper's mean word probability times the diariser's
mean margin (:func:`~diadem_ray.annotate.diarize.cluster_constrained`).

What is estimated and what is not: the number of speakers, who said each turn, the turn times,
single shot or not, an off-screen speaker (a speaker whose turns never show one visible person
moving their mouth), the people on screen. Not estimated: same-sex / opposite-sex speakers
(written as false) and overlapping speech (``speaker_num`` is the speaker count, never DiaDemBench's
0 for overlap; two voices at once become one segment of one speaker).

Units: seconds; audio 16 kHz mono float32.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from diadem_ray.annotate.dialogues import LabelledTurn, merge_turns, split_dialogues
from diadem_ray.annotate.diarize import cluster_constrained, pair_distances
from diadem_ray.annotate.faces import Tracks, face_finder, visible
from diadem_ray.annotate.shots import shot_cuts
from diadem_ray.annotate.speech import SpeechSegment, segments_of
from diadem_ray.config.schema import AnnotateConfig
from diadem_ray.models.tiny_av_frontend import speech_segments
from diadem_ray.types import Clip, Turn

RATE_HZ = 16000
DEFAULT_PROMPT = "Describe the dialogue in this video: who says what, word for word."


@dataclass(frozen=True)
class Dialogue:
    """One annotated dialogue: the clip row, where it came from, and how sure the annotator is."""

    clip: Clip
    source_uri: str
    source_start_s: float
    source_end_s: float
    confidence: float
    num_shots: int
    on_screen: Tuple[bool, ...] = ()  # per line: was its speaker seen speaking (in any of their lines)


@dataclass
class VideoResult:
    """What one video gave: dialogues, or the reason it was skipped; seconds spent."""

    uri: str
    dialogues: List[Dialogue] = field(default_factory=list)
    skipped: str = ""
    seconds: float = 0.0


class Skip(Exception):
    """A video that gives no dialogue; the message is the reason."""


class Annotator:
    """The models of the annotation pipeline, loaded once per worker."""

    def __init__(self, cfg: AnnotateConfig) -> None:
        from diadem_ray.annotate.diarize import SpeakerEncoder
        from diadem_ray.annotate.speech import Transcriber

        self.cfg = cfg
        self.asr = Transcriber(cfg.asr_model, language=cfg.language, cpu_threads=cfg.asr_threads)
        self.voices = SpeakerEncoder()
        self.faces = face_finder(cfg.faces)

    def __call__(self, uri: str, clip_id: str, videos_out: Path) -> VideoResult:
        t0 = time.perf_counter()
        res = VideoResult(uri)
        try:
            res.dialogues = self._annotate(uri, clip_id, videos_out)
        except Skip as exc:
            res.skipped = str(exc)
        except Exception as exc:  # one video's failure must not end the job: it is skipped, named
            res.skipped = f"annotation failed ({type(exc).__name__}: {exc})"
        res.seconds = round(time.perf_counter() - t0, 3)
        return res

    def _media(self, uri: str):
        from diadem_ray.data.decode import DecodeError, FrameTooLarge, decode_clip, probe

        try:
            duration = probe(uri)
        except DecodeError as exc:
            raise Skip(f"unreadable video ({exc})") from None
        if not duration > 0:
            raise Skip("zero-length video")
        if duration > self.cfg.max_video_s:
            raise Skip(f"{duration:.0f} s long, over annotate.max_video_s = {self.cfg.max_video_s:.0f}; split it first")
        max_frames = max(1, min(self.cfg.max_frames, math.ceil(duration * self.cfg.frames_per_second) + 1))
        try:
            media = decode_clip(
                uri, max_frames=max_frames, sample_rate_hz=RATE_HZ, max_frame_pixels=self.cfg.max_frame_pixels
            )
        except FrameTooLarge as exc:
            raise Skip(f"frames over annotate.max_frame_pixels ({exc})") from None
        except DecodeError as exc:
            raise Skip(f"corrupt or unreadable video ({exc})") from None
        if len(media.audio) == 0:
            raise Skip("no audio track")
        return duration, media

    def _annotate(self, uri: str, clip_id: str, videos_out: Path) -> List[Dialogue]:
        cfg = self.cfg
        duration, media = self._media(uri)
        spans = speech_segments(media.audio, RATE_HZ, min_gap_s=cfg.pause_s)
        words = self.asr.words(media.audio) if spans else []
        segments = segments_of(spans, words)
        if not segments:
            raise Skip(f"no speech found ({len(spans)} voiced spans, {len(words)} words recognised)")
        cuts = shot_cuts(media.frames, media.frame_times_s, threshold=cfg.shot_threshold, ratio=cfg.shot_ratio)
        tracks = self.faces.track(media.frames, media.frame_times_s)
        groups = split_dialogues(segments, cuts, gap_s=cfg.dialogue_gap_s, cut_gap_s=cfg.dialogue_cut_gap_s)
        out = []
        for k, segs in enumerate(groups):
            start = max(0.0, segs[0].start_s - cfg.pad_s)
            end = min(duration, segs[-1].end_s + cfg.pad_s)
            if len(groups) == 1:
                start, end = 0.0, duration
            out.append(
                self._dialogue(
                    uri,
                    clip_id if len(groups) == 1 else f"{clip_id}-d{k + 1}",
                    segs,
                    media.audio,
                    tracks,
                    cuts,
                    start,
                    end,
                    duration,
                    videos_out,
                )
            )
        return out

    def _speakers(
        self, segs: Sequence[SpeechSegment], audio: np.ndarray, tracks: Tracks
    ) -> Tuple[List[int], float, List[Optional[str]]]:
        emb, seen, quiet = [], [], []
        for s in segs:
            emb.append(self.voices.embed(audio[int(s.start_s * RATE_HZ) : int(s.end_s * RATE_HZ)]))
            movers = self.faces.movers(tracks, s.start_s, s.end_s)
            seen.append(next(iter(movers)) if len(movers) == 1 else None)
            quiet.append(visible(tracks, s.start_s, s.end_s) - movers)
        labels, conf = cluster_constrained(
            pair_distances(np.stack(emb)), seen, quiet, threshold=self.cfg.speaker_threshold
        )
        return labels, conf, seen

    def _dialogue(
        self,
        uri: str,
        clip_id: str,
        segs: List[SpeechSegment],
        audio: np.ndarray,
        tracks: Tracks,
        cuts: Sequence[float],
        start: float,
        end: float,
        duration: float,
        videos_out: Path,
    ) -> Dialogue:
        labels, diar_conf, seen = self._speakers(segs, audio, tracks)
        turns: List[LabelledTurn] = merge_turns(segs, labels, merge_gap_s=self.cfg.turn_merge_gap_s)
        on_screen = {lab for lab, who in zip(labels, seen) if who is not None}
        n_speakers = max(labels) + 1
        probs = [w.probability for s in segs for w in s.words]
        confidence = round(float(np.mean(probs)) * diar_conf, 4)
        inside = [c for c in cuts if start < c < end]
        video = uri
        if (start, end) != (0.0, duration):
            from diadem_ray.annotate.media import cut_video
            from diadem_ray.data.decode import DecodeError

            path = videos_out / f"{clip_id}.mp4"
            try:
                cut_video(uri, start, end, path, audio[int(start * RATE_HZ) : int(end * RATE_HZ)])
            except DecodeError as exc:
                raise Skip(str(exc)) from None
            video = str(path.resolve())
        names = [f"SPEAKER_{k + 1}" for k in range(n_speakers)]
        clip = Clip(
            clip_id=clip_id,
            video_uri=video,
            duration_s=round(end - start, 3),
            language=self.cfg.language,
            prompt=DEFAULT_PROMPT,
            characters=(),
            dialogue=tuple(
                Turn(names[t.speaker], t.text, round(t.start_s - start, 3), round(t.end_s - start, 3)) for t in turns
            ),
            speaker_num=n_speakers,
            people_on_screen=self.faces.people_on_screen(tracks.between(start, end)),
            is_single_shot=not inside,
            has_off_screen_speaker=len(on_screen) < n_speakers,
            has_same_sex_speakers=False,
            only_opposite_sex_speakers=False,
        )
        seen_lines = tuple(t.speaker in on_screen for t in turns)
        return Dialogue(clip, uri, round(start, 3), round(end, 3), confidence, len(inside) + 1, seen_lines)
