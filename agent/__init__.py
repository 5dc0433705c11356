"""The Invigil student agent: captures screens, spools them on disk and uploads them to the hall server."""
