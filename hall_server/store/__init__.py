"""The store: the bottom of the hall server, holding everything an exam leaves behind.

SQLite through sqlite-utils (``db``, named ``migrations``, the ``writegate`` that queues writers and group
commits), encrypted content-addressed blobs (``blobs``, ``crypto``), the per-session hash chain (``chain``),
halls, exams, rosters and their one header reader (``exams``), staff accounts (``users``), the append-only
audit log and its one writer (``audit``), upload checks (``images``), and the one way to an exam's images
(``screens``, which puts tile updates back together through ``frames``). It imports nothing of the server
above it: ingest, the live view, review and the dashboard all build on it.
"""
