"""Query strings from careless clients: a parameter given twice is refused, not read as its last value."""

from __future__ import annotations


def test_a_query_parameter_given_twice_is_a_422_naming_it(client, trained: dict) -> None:
    job = trained["job_id"]
    for path, name in [
        (f"/v1/jobs/{job}/labels?format=csv&format=json", "format"),  # answered JSON, with a 200
        ("/v1/jobs?limit=1&limit=2", "limit"),  # listed two jobs
        (f"/v1/jobs/{job}/report?format=json&format=html", "format"),
    ]:
        r = client.get(path)
        assert r.status_code == 422, (path, r.text)
        error = r.json()["error"]
        assert (error["field"], error["message"]) == (f"query.{name}", "given 2 times; give it once")
    assert client.get(f"/v1/jobs/{job}/labels?format=csv").status_code == 200
