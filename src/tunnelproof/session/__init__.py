"""The reconnecting client: a sans-I/O state machine and a thin asyncio driver."""
