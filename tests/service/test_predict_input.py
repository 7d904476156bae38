"""The predict body's checks name what the model takes: its feature modalities, and the ones it reads from the
transcript (a model trained on transcripts has no text features to send)."""

from __future__ import annotations

import json
import random

import pytest

from service.errors import ApiError
from service.predict_input import Limits, parse, precheck, structure

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


def test_a_transcript_sent_to_a_model_that_reads_none_is_refused() -> None:
    """It was passed over without a word: the caller could not tell that the model never read it."""
    spec = {"text": {"dim": 2}, "audio": {"dim": 3}}
    body = {"utterances": [{"transcript": "good", "features": {"text": [1, 2], "audio": [1, 2, 3]}}]}
    with pytest.raises(ApiError) as err:
        parse(json.dumps(body).encode(), spec, LIMITS)
    assert err.value.field == "body.utterances.0.transcript"
    takes = "this model takes features for text, audio"
    assert err.value.message == f"this model reads no transcript ({takes}); leave it out"
    body["utterances"][0]["transcript"] = None  # null: nothing given
    assert parse(json.dumps(body).encode(), spec, LIMITS).transcripts == [None]


def test_a_good_utterance_is_read() -> None:
    parsed = parse(
        json.dumps({"utterances": [{"transcript": "good", "features": {"audio": [1, 2, 3]}}]}).encode(),
        SPEC,
        LIMITS,
    )
    assert parsed.transcripts == ["good"] and parsed.features[0]["audio"].tolist() == [1.0, 2.0, 3.0]


def _counted(value: object) -> tuple[int, int]:
    """(objects, arrays and commas) of a parsed JSON value, counted on the value itself."""
    if isinstance(value, dict | list):
        children = list(value.values()) if isinstance(value, dict) else value
        counts = [_counted(child) for child in children]
        own = (1, 0) if isinstance(value, dict) else (0, 1)
        return (
            own[0] + sum(c[0] for c in counts),
            own[1] + max(len(children) - 1, 0) + sum(c[1] for c in counts),
        )
    return 0, 0


def test_structure_counts_objects_arrays_and_commas_outside_strings() -> None:
    """Strings full of the bytes that make structure, escaped quotes and runs of backslashes (one ending a
    string among them) are not counted; what the parser builds is."""
    rng = random.Random(0)
    alphabet = '\\"{}[],: aé'
    for _ in range(300):
        words = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(6)]
        value = {
            "utterances": [
                {"id": words[0], "transcript": words[1] + "\\", "features": {"audio": [[1, 2], [3, 4]]}},
                {words[2]: [words[3], {words[4]: []}], "features": {}},
            ][: rng.randrange(1, 3)],
            words[5]: [],
        }
        for ensure_ascii in (True, False):
            body = json.dumps(value, ensure_ascii=ensure_ascii).encode()
            assert structure(body) == _counted(value), body


def test_a_body_of_many_objects_is_refused_before_parsing() -> None:
    """The parser builds objects slowest: 200,000 in 5.8 MB held the API's event loop for a second."""
    body = json.dumps({"utterances": [{"features": {"bogus": {}}}] * 200_000}).encode()
    with pytest.raises(ApiError) as err:
        precheck(body, Limits(max_batch=4096, max_values=1_000_000))
    assert (err.value.status, err.value.field) == (422, "body.utterances")
    assert err.value.message == (
        "at most 4096 utterances per request (the body holds 600001 JSON objects; "
        "an utterance is one, its features another)"
    )


def test_commas_and_brackets_in_transcripts_are_not_numbers() -> None:
    """A transcript's punctuation is no reason to refuse a body as too large."""
    words = 'well, [so] {"quoted\\"}, ' * 200
    body = json.dumps({"utterances": [{"transcript": words, "features": {"audio": [1, 2, 3]}}] * 4}).encode()
    precheck(body, LIMITS)
    assert parse(body, SPEC, LIMITS).transcripts == [words] * 4


@pytest.mark.parametrize(
    "body, message",
    [
        (bytes(range(256)) * 12_000, "not valid JSON: expected value at line 1 column 1"),  # a binary file
        (b'{"utterances": ' + b"{" * 9000, "not valid JSON: key must be a string at line 1 column 17"),
        (json.dumps([{}] * 9000).encode(), 'expected an object {"utterances": [...]}'),
    ],
)
def test_a_body_over_a_limit_that_is_no_request_is_named_so(body: bytes, message: str) -> None:
    """The counts assume JSON: a body over a limit whose first bytes show it is no request says that, as
    the parser would, not that it holds too many objects."""
    with pytest.raises(ApiError) as err:
        precheck(body, LIMITS)
    assert (err.value.status, err.value.field, err.value.message) == (422, "body", message)


@pytest.mark.parametrize(
    ("sequence", "value", "message"),
    [
        (False, [[1, 2, 3], [4, 5, 6]], "this model takes a [3] vector, got shape [2, 3]"),
        (True, [1, 2, 3], "this model takes a [T, 3] sequence, got shape [3]"),
    ],
)
def test_a_sequence_for_a_vector_model_or_the_reverse_names_its_utterance(
    sequence: bool, value: list, message: str
) -> None:
    """Refused by the model before, naming the row of its forward pass and the field body.utterances."""
    spec = {"audio": {"dim": 3, "sequence": sequence, "transcript": False}}
    good = [[1, 2, 3]] if sequence else [1, 2, 3]
    body = {"utterances": [{"features": {"audio": good}}, {"features": {"audio": value}}]}
    with pytest.raises(ApiError) as err:
        parse(json.dumps(body).encode(), spec, LIMITS)
    assert (err.value.field, err.value.message) == ("body.utterances.1.features.audio", message)
