"""The token service: authenticated, rate-limited minting of single-use ephemeral tokens."""
