"""The server: asyncio Protocol over one SQLite file per server."""
