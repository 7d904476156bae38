"""The bounds of a list's page (``GET /v1/jobs``, ``/v1/datasets``, ``/v1/models``: ``?limit=&offset=``), in
one place: the service's query parameters check them, and ``unilabel-remote`` checks its ``--limit`` and
``--offset`` against the same numbers before any request, and pages through a whole list by the largest."""

PAGE_DEFAULT = 100  # a list's page when no limit is asked for
PAGE_MAX = 1000  # the largest ``limit`` the API takes
OFFSET_MAX = 10**9  # the largest ``offset`` it takes
