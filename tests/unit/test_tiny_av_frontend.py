"""The tiny_av perception front-end reads back what the renderer drew and what the voices said."""

from __future__ import annotations

import numpy as np

from diadem_ray.data.decode import decode_clip
from diadem_ray.data.render import Figure, background, draw_person
from diadem_ray.data.synth import Voice, make_clip
from diadem_ray.models import tiny_av
from diadem_ray.models.families import get_family
from diadem_ray.models.tiny_av_frontend import FrontEnd, people_in_frame, pitch_hz, speech_segments


def test_people_are_read_back_from_a_frame():
    img = background(96, 128, (200, 160, 220))
    draw_person(img, Figure("red", "long"), cx=40, ground_y=90, scale=1.0, mouth_open=1.0)
    draw_person(img, Figure("blue", "grey-short"), cx=90, ground_y=90, scale=1.0, mouth_open=0.0)
    found = {ident: mouth for ident, mouth, _ in people_in_frame(img)}
    assert set(found) == {"red/long", "blue/grey-short"}
    assert found["red/long"] > found["blue/grey-short"] + 0.03
    close = background(96, 128, (150, 185, 215))
    draw_person(close, Figure("green", "grey-long"), cx=64, ground_y=96 * 1.35, scale=2.0, mouth_open=0.5)
    assert [i for i, _, _ in people_in_frame(close)] == ["green/grey-long"]


def test_pitch_and_segments_on_tones():
    rate = 16000
    t = np.arange(int(0.6 * rate)) / rate
    low, high = 0.5 * np.sin(2 * np.pi * 110 * t), 0.5 * np.sin(2 * np.pi * 220 * t)
    audio = np.concatenate([np.zeros(4000), low, np.zeros(8000), high, np.zeros(4000)]).astype(np.float32)
    segs = speech_segments(audio, rate)
    assert len(segs) == 2
    assert abs(pitch_hz(low.astype(np.float32), rate) - 110) < 5
    assert abs(pitch_hz(high.astype(np.float32), rate) - 220) < 10


def test_evidence_of_a_synthetic_clip(tmp_path):
    voice = Voice()
    clip = make_clip(1, seed=11, out_dir=tmp_path, voice=voice)
    m = decode_clip(clip.video_uri)
    ev = FrontEnd(cpu_threads=2).evidence(m.frames, m.frame_times_s, m.audio, m.sample_rate_hz)
    colors = sorted(p.split("/")[0] for p in ev.people)
    assert colors == sorted(c.split()[-1] for c in clip.characters)
    spoken = " ".join(s.words for s in ev.segments).lower()
    assert sum(w.strip(".,?!").lower() in spoken for t in clip.dialogue for w in t.text.split()) >= 0.6 * sum(
        len(t.text.split()) for t in clip.dialogue
    )
    text = tiny_av.prompt_text(ev.text())
    assert text.startswith(tiny_av.INSTRUCTION) and text.endswith("Dialogue:\n") and "People:" in text


def test_target_caption_round_trips_through_the_structured_extractor(tmp_path):
    from diadem_ray.rewards.extract import extract_structured

    clip = make_clip(2, seed=11, out_dir=tmp_path, voice=Voice())
    turns = extract_structured(get_family("tiny_av").sft_target(clip))
    assert [(t.speaker, t.text) for t in turns] == [(t.speaker, t.text) for t in clip.dialogue]
