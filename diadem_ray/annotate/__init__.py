"""Reference dialogues from raw video (``diadem-ray annotate``, docs/annotate.md).

``speech`` (voice activity, Whisper words), ``shots`` (cuts), ``faces`` (who is on screen and whose
mouth moves), ``diarize`` (voices clustered under visual constraints), ``dialogues`` (splits and
turns), ``media`` (cutting a dialogue out), ``pipeline`` (one video), ``job`` (the Ray Data job and
its outputs), ``evaluate`` (scores against known truth)."""
