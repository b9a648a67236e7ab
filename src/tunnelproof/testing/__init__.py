"""Test tools: tunnel proxy, network-namespace tunnel, pytest fixtures."""
