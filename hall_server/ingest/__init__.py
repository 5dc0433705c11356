"""Ingest: the agent API v1 and everything an upload goes through on its way into the store.

``api`` parses each request with ``invigil.payloads`` and authenticates it, ``sessions`` enrols agents and
answers heartbeats (health from ``health``, pending instructions, clock skew), ``records`` stores captures,
thumbnails, unchanged records, device and site events idempotently and acknowledges only what is durable,
and the pure ``rules`` turn events into observations in the same transaction. ``openapi`` describes the
API. It tells the live view what changed and never imports the reviewer's side.
"""
