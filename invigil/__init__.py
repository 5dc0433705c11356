"""The wire contract shared by the agent, the hall server and the network policy (stdlib only)."""
