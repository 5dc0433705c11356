"""``python -m agent``: the same as the ``invigil-agent`` command."""

from agent.cli import main

main()
