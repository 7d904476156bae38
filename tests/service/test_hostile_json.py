"""JSON bodies from hostile or careless clients: every refusal a 4xx naming the body."""

from __future__ import annotations


def _error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    return response.json()["error"]


def test_a_job_body_of_digits_or_nesting_the_parser_cannot_read_is_a_422_on_body(client) -> None:
    """FastAPI's own 400 "There was an error parsing the body", with no field, answered these."""
    bodies = {
        '{"dataset_id": "x", "seed": 1' + "0" * 5000 + "}": "4300 digits",  # Python's int limit
        '{"dataset_id": "x", "hyperparameters": {"lr": ' + "[" * 100_000 + "]" * 100_000 + "}}": "nested",
    }
    for body, words in bodies.items():
        r = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
        error = _error(r, 422)
        assert error["code"] == "validation_error" and error["field"] == "body", error
        assert error["message"].startswith("not valid JSON") and words in error["message"], error
        assert "set_int_max_str_digits" not in error["message"]
