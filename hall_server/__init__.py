"""The hall server: agent API, store, blobs, live bus, rules, discovery, retention."""
