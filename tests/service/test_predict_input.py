"""The predict body's checks name what the model takes: its feature modalities, and the ones it reads from the
transcript (a model trained on transcripts has no text features to send)."""

from __future__ import annotations

import json

import pytest

from service.errors import ApiError
from service.predict_input import Limits, parse

SPEC = {"text": {"transcript": True}, "audio": {"dim": 3}}
LIMITS = Limits(max_batch=8, max_values=1000)


def _problem(utterance: dict) -> tuple[str | None, str]:
    with pytest.raises(ApiError) as err:
        parse(json.dumps({"utterances": [utterance]}).encode(), SPEC, LIMITS)
    return err.value.field, err.value.message


def test_a_missing_feature_names_features_and_transcript() -> None:
    field, message = _problem({"transcript": "good"})
    assert field == "body.utterances.0.features.audio"
    assert message == "missing (this model takes features for audio and text from the transcript)"


def test_an_unknown_modality_names_what_the_model_takes() -> None:
    field, message = _problem({"transcript": "good", "features": {"audio": [1, 2, 3], "vision": [1]}})
    assert field == "body.utterances.0.features.vision"
    assert message.endswith("(this model takes features for audio and text from the transcript)")


@pytest.mark.parametrize("transcript, state", [(None, "missing"), ("", "empty"), ("   ", "empty")])
def test_a_transcript_left_out_or_empty_is_named_so(transcript: str | None, state: str) -> None:
    utterance = {"features": {"audio": [1, 2, 3]}} | (
        {} if transcript is None else {"transcript": transcript}
    )
    field, message = _problem(utterance)
    assert (field, message) == (
        "body.utterances.0.transcript",
        f"{state} (this model reads text from the transcript)",
    )


def test_a_good_utterance_is_read() -> None:
    parsed = parse(
        json.dumps({"utterances": [{"transcript": "good", "features": {"audio": [1, 2, 3]}}]}).encode(),
        SPEC,
        LIMITS,
    )
    assert parsed.transcripts == ["good"] and parsed.features[0]["audio"].tolist() == [1.0, 2.0, 3.0]
