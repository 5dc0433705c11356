"""The entry point of Invigil.app: the same as the ``invigil-agent`` command (``check`` as first argument
runs the practice check)."""

from agent.cli import main

main()
