"""Network policy: the mitmproxy addon, the DNS/SNI sentinel and the gateway rules (the policy grammar
itself is the wire contract's: ``invigil.policy``).

Imports only ``invigil`` and the standard library: it runs inside mitmdump's own virtual environment.
"""
