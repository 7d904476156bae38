"""A predict request's body, parsed and checked within a memory budget.

The body is parsed by pydantic-core's JSON parser into plain Python values (no model validation: pydantic's
validation reports every bad element, and a 10 MB body of bad numbers made a 500 MB error list and 7 GB of
errors in memory), then walked once, stopping at the first problem, and each feature becomes a float32 array
straight away. What it may cost is bounded before it is parsed: MAX_PREDICT_BODY_BYTES, then its JSON
objects (two per utterance, MAX_PREDICT_BATCH utterances) and its arrays and numbers (MAX_PREDICT_VALUES),
counted on the bytes outside its strings; the API checks and parses large bodies in a worker thread, at most
PARSE_THREADS at a time (service/serving.py), so the event loop keeps answering.

The documented schema is api_schemas.predict.PredictRequest; this walk accepts exactly what it describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pydantic_core

from api_schemas.predict import MAX_ID, MAX_TRANSCRIPT
from service.errors import ApiError, not_json

UTTERANCE_FIELDS = frozenset({"id", "features", "transcript"})
NUMERIC = "iuf"  # integers and floats; booleans, strings and objects are refused
NO_OBJECT = 'expected an object {"utterances": [...]}'
HEAD_BYTES = 64 * 1024  # what is parsed of a body over a limit, to tell a body that is no request


@dataclass(frozen=True)
class Limits:
    max_batch: int
    max_values: int


@dataclass
class Parsed:
    """One request, checked: each utterance's id, float32 arrays and transcript (if the model reads one)."""

    ids: list[str | None]
    features: list[dict[str, np.ndarray]]
    transcripts: list[str | None]


def bad(field: str, problem: str, status: int = 422) -> ApiError:
    return ApiError(status, problem, field=field)


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, f"body larger than MAX_PREDICT_BODY_BYTES={limit}", field="body")


def _too_many_values(limits: Limits) -> ApiError:
    return bad("body", f"more than MAX_PREDICT_VALUES={limits.max_values} numbers in one request", 413)


def precheck(body: bytes, limits: Limits) -> None:
    """Refuse, before parsing, a body that holds more numbers or objects than allowed: every number but the
    first of an array follows a comma, every array opens with a bracket, and the body is one object, each
    utterance and its features one more. Objects are what the parser builds slowest (holding the GIL: 200,000
    took the API's event loop 0.5 s), so they are bounded by the batch size, not by the bytes."""
    max_values, max_objects = limits.max_values + 8 * limits.max_batch + 16, 1 + 2 * limits.max_batch
    objects, arrays_and_commas = _counted(np.frombuffer(body, np.uint8))
    if arrays_and_commas > max_values or objects > max_objects:
        # counted again outside the strings only now: the bytes of strings can only add to the counts, and
        # skipping the string mask takes a 99 KB batch of 64 utterances from 500 to 55 us
        objects, arrays_and_commas = structure(body)
    too_many_values, too_many_objects = arrays_and_commas > max_values, objects > max_objects
    if too_many_values or too_many_objects:
        _refuse_what_is_no_request(body[:HEAD_BYTES])
    if too_many_values:
        raise _too_many_values(limits)
    if too_many_objects:
        raise bad(
            "body.utterances",
            f"at most {limits.max_batch} utterances per request (the body holds {objects} JSON objects; "
            "an utterance is one, its features another)",
        )


def _refuse_what_is_no_request(head: bytes) -> None:
    """A body over a limit is refused for what its first bytes show when they show it is no request at all
    (a binary file, a JSON array): the counts assume JSON, and the parser stops at its first error."""
    try:
        start = pydantic_core.from_json(head, allow_partial="trailing-strings", allow_inf_nan=False)
    except ValueError as exc:
        raise not_json(str(exc)) from None
    if not isinstance(start, dict):
        raise bad("body", NO_OBJECT)


def structure(body: bytes) -> tuple[int, int]:
    """The JSON objects, and the arrays and commas, of ``body`` outside its strings: exact up to its first
    syntax error, where the parser stops too."""
    # In a string only the escapes \\ and \" hold a quote or a backslash before one; without them (a run of
    # backslashes loses its pairs from the left, as the escapes are read) the quotes alternate opening and
    # closing strings.
    plain = np.frombuffer(body.replace(b"\\\\", b"").replace(b'\\"', b""), np.uint8)
    return _counted(plain, outside=~np.logical_xor.accumulate(plain == ord('"')))


def _counted(body: np.ndarray, outside: np.ndarray | None = None) -> tuple[int, int]:
    """The '{' bytes, and the '[' and ',' bytes, of ``body`` (where ``outside`` holds, if given)."""
    objects = body == ord("{")
    arrays_and_commas = (body == ord("[")) | (body == ord(","))
    if outside is not None:
        objects &= outside
        arrays_and_commas &= outside
    return int(np.count_nonzero(objects)), int(np.count_nonzero(arrays_and_commas))


def parse(body: bytes, spec: dict[str, dict], limits: Limits) -> Parsed:
    """The request for a model with input spec ``spec``; raises ApiError naming the first problem."""
    try:
        data = pydantic_core.from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise not_json(str(exc)) from None
    if not isinstance(data, dict):
        raise bad("body", NO_OBJECT)
    for key in data:
        if key != "utterances":
            raise bad(
                f"body.{key}",
                'unknown field: this request does not take it (the body is {"utterances": [...]})',
            )
    utterances = data.get("utterances")
    if not isinstance(utterances, list) or not utterances:
        raise bad("body.utterances", "expected a non-empty list of utterances")
    if len(utterances) > limits.max_batch:
        raise bad("body.utterances", f"at most {limits.max_batch} utterances per request")
    out = Parsed([], [], [])
    budget = [limits.max_values]
    for i, utt in enumerate(utterances):
        uid, arrays, transcript = _utterance(f"body.utterances.{i}", utt, spec, budget, limits)
        out.ids.append(uid)
        out.features.append(arrays)
        out.transcripts.append(transcript)
    return out


def _text(where: str, value: Any, max_length: int) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > max_length):
        raise bad(where, f"expected a string of at most {max_length} characters, or null")
    return value


def _utterance(
    where: str, utt: Any, spec: dict[str, dict], budget: list[int], limits: Limits
) -> tuple[str | None, dict[str, np.ndarray], str | None]:
    if not isinstance(utt, dict):
        raise bad(where, 'expected an object {"features": {...}}')
    for key in utt:
        if key in spec:  # {"audio": [...]} where {"features": {"audio": [...]}} was meant
            goes = (
                '{"transcript": "..."}'
                if spec[key].get("transcript")
                else f'{{"features": {{"{key}": [...]}}}}'
            )
            raise bad(f"{where}.{key}", f"this model takes {key} as {goes}")
        if key not in UTTERANCE_FIELDS:
            raise bad(f"{where}.{key}", "unknown field: an utterance has id, features, transcript")
    uid = _text(f"{where}.id", utt.get("id"), MAX_ID)
    transcript = _text(f"{where}.transcript", utt.get("transcript"), MAX_TRANSCRIPT)
    if transcript is not None and not any(s.get("transcript") for s in spec.values()):
        # it would be passed over: a user who meant the model to read it would never learn that it did not
        raise bad(f"{where}.transcript", f"this model reads no transcript ({_takes(spec)}); leave it out")
    features = utt.get("features", {})
    if not isinstance(features, dict):
        raise bad(f"{where}.features", "expected an object of modality -> vector or sequence")
    arrays = {}
    for name, value in features.items():
        field = f"{where}.features.{name}"
        if name not in spec:
            raise bad(field, f"this model has no modality {name!r} ({_takes(spec)})")
        if spec[name].get("transcript"):
            raise bad(field, f"this model reads {name} from the transcript; send the transcript instead")
        arr = _array(field, value, spec[name].get("dim"), spec[name].get("sequence"))
        budget[0] -= arr.size
        if budget[0] < 0:
            raise _too_many_values(limits)
        arrays[name] = arr
    for name, s in spec.items():
        if name in arrays:
            continue
        if not s.get("transcript"):
            raise bad(f"{where}.features.{name}", f"missing ({_takes(spec)})")
        if transcript is None or not transcript.strip():
            state = "missing" if transcript is None else "empty"
            raise bad(f"{where}.transcript", f"{state} (this model reads {name} from the transcript)")
    return uid, arrays, transcript


def _takes(spec: dict[str, dict]) -> str:
    """'this model takes features for audio, vision and text from the transcript', from its input spec."""
    features = [m for m, s in spec.items() if not s.get("transcript")]
    read = [m for m, s in spec.items() if s.get("transcript")]
    parts = [f"features for {', '.join(features)}"] if features else []
    parts += [f"{', '.join(read)} from the transcript"] if read else []
    return "this model takes " + " and ".join(parts)


def _array(field: str, value: Any, dim: int | None, sequence: bool | None = None) -> np.ndarray:
    if not isinstance(value, list):
        raise bad(field, "expected a [d] vector or a [T, d] sequence of numbers")
    try:
        arr = np.asarray(value)
    except (ValueError, OverflowError):
        raise bad(field, "rows of a sequence must all have the same length") from None
    if arr.dtype.kind not in NUMERIC:
        raise bad(field, "values must be numbers")
    if arr.ndim not in (1, 2) or arr.shape[0] == 0 or arr.size == 0:
        raise bad(field, "expected a non-empty [d] vector or [T, d] sequence")
    if dim is not None and arr.shape[-1] != dim:
        raise bad(field, f"expected dimension {dim}, got {arr.shape[-1]}")
    if sequence is not None and arr.ndim != (2 if sequence else 1):
        # checked here, where the utterance is known: the model's own check named the row of the forward
        # pass ("features.text[0]", the first cache miss of the micro-batch) and the field body.utterances
        want = f"a [T, {arr.shape[-1]}] sequence" if sequence else f"a [{arr.shape[-1]}] vector"
        raise bad(field, f"this model takes {want}, got shape {list(arr.shape)}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise bad(field, "values must be finite numbers (within float32's range)")
    return arr
