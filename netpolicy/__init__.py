"""Network policy: the policy grammar (pure), the mitmproxy addon and the DNS/SNI sentinel.

Imports only ``invigil`` and the standard library: it runs inside mitmdump's own virtual environment.
"""
