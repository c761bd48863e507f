"""Synthetic clips: deterministic, decodable, consistent ground truth, intelligible speech."""

from __future__ import annotations

import random
from pathlib import Path

import jiwer
import numpy as np
import pytest

from diadem_ray.data.decode import DecodeError, decode_clip
from diadem_ray.data.grammar import dialogue_lines
from diadem_ray.data.schema import validate_clip
from diadem_ray.data.shards import list_shards, read_shard
from diadem_ray.data.synth import Voice, make_clip, synthesize


@pytest.fixture(scope="module")
def voice() -> Voice:
    return Voice()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("syn")
    clips = synthesize(out, 12, seed=3, workers=1, progress=False)
    return out, clips


def test_grammar_is_varied():
    lines = dialogue_lines(random.Random(0), 300)
    assert len(set(lines)) > 250
    assert all(3 <= len(x.split()) <= 16 and x[-1] in ".?!" for x in lines)


def test_same_seed_same_clip_and_media(tmp_path, voice):
    a = make_clip(5, seed=9, out_dir=tmp_path / "a", voice=voice)
    b = make_clip(5, seed=9, out_dir=tmp_path / "b", voice=voice)
    assert a.dialogue == b.dialogue and a.characters == b.characters and a.duration_s == b.duration_s
    ma, mb = decode_clip(a.video_uri), decode_clip(b.video_uri)
    assert np.array_equal(ma.frames, mb.frames) and np.array_equal(ma.audio, mb.audio)
    c = make_clip(6, seed=9, out_dir=tmp_path / "a", voice=voice)
    assert c.dialogue != a.dialogue


def test_written_dataset_is_valid_and_consistent(dataset):
    out, clips = dataset
    assert [c.clip_id for c in read_shard(list_shards(str(out / "shards"))[0])] == [c.clip_id for c in clips]
    assert (out / "annotations.jsonl").read_text().count("\n") == len(clips)
    for c in clips:
        assert validate_clip(c) == []
        speakers = {t.speaker for t in c.dialogue}
        assert all(s in c.characters or s.endswith("off screen") for s in speakers)
        assert c.has_off_screen_speaker == any(s.endswith("off screen") for s in speakers)
        assert c.people_on_screen == len(c.characters)
        overlap = any(b.start_s < a.end_s for a, b in zip(c.dialogue, c.dialogue[1:]))
        assert (c.speaker_num == 0) == overlap
        if not overlap:
            assert c.speaker_num == len(speakers)
        m = decode_clip(c.video_uri)
        assert m.frames.ndim == 4 and m.frames.shape[-1] == 3
        assert abs(len(m.audio) / 16000 - c.duration_s) < 0.15


def test_speech_is_intelligible_to_whisper(dataset):
    """Issue #6 acceptance: Whisper tiny.en on random clips reaches WER <= 0.35 against the script."""
    from diadem_ray.models.tiny_av_frontend import FrontEnd

    _, clips = dataset
    fe = FrontEnd(cpu_threads=2)
    refs, hyps = [], []
    for c in random.Random(0).sample(clips, 6):
        m = decode_clip(c.video_uri)
        if c.speaker_num == 0:
            continue  # overlapping speech is not meant to be transcribable word for word
        refs.append(" ".join(t.text for t in c.dialogue))
        hyps.append(" ".join(w for _, _, w in fe.words(m.audio)))
    norm = jiwer.Compose(
        [
            jiwer.ToLowerCase(),
            jiwer.RemovePunctuation(),
            jiwer.RemoveMultipleSpaces(),
            jiwer.Strip(),
            jiwer.ReduceToListOfListOfWords(),
        ]
    )
    wer = jiwer.wer(refs, hyps, reference_transform=norm, hypothesis_transform=norm)
    assert wer <= 0.35, (wer, list(zip(refs, hyps)))


def test_corrupt_and_missing_clips_fail_with_the_uri(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all")
    with pytest.raises(DecodeError, match="bad.mp4"):
        decode_clip(str(bad))
    with pytest.raises(DecodeError, match="missing.mp4"):
        decode_clip(str(tmp_path / "missing.mp4"))


def test_synth_cli_rejects_bad_input(tmp_path, capsys):
    from diadem_ray.cli import main

    with pytest.raises(SystemExit) as info:  # refused by the parser, before anything runs
        main(["synth", "--out", str(tmp_path), "--clips", "0"])
    assert info.value.code == 2 and "--clips: must be >= 1" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path), "--clips", "2", "--overlap-rate", "1.5"]) == 1
    assert "--overlap-rate must be in [0, 1]" in capsys.readouterr().err
    assert not (Path(tmp_path) / "shards").exists()


def test_speakers_are_distinct_voices(tmp_path, voice):
    """Issue #6 acceptance: resemblyzer embeddings of two speakers in a clip are further apart than
    two utterances of one speaker."""
    import random as _random

    from resemblyzer import VoiceEncoder

    from diadem_ray.data.grammar import dialogue_line
    from diadem_ray.data.synth import SynthRates, _people

    enc = VoiceEncoder(device="cpu", verbose=False)
    checked = 0
    for idx in range(40):
        rng = _random.Random(f"voices:{idx}")
        people, _ = _people(rng, SynthRates(off_screen=0.0))
        if len(people) < 2:
            continue
        a, b = people[:2]
        emb = {}
        for name, p in (("a", a), ("b", b)):
            for k in range(2):
                wav = voice.speak(dialogue_line(rng, first=k == 0), pitch=p.pitch, rate=p.rate)
                emb[name, k] = enc.embed_utterance(wav)
        same = min(float(emb["a", 0] @ emb["a", 1]), float(emb["b", 0] @ emb["b", 1]))
        across = max(float(emb["a", i] @ emb["b", j]) for i in range(2) for j in range(2))
        assert across < same, (a, b, same, across)
        checked += 1
        if checked == 3:
            break
    assert checked == 3
