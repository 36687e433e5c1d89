"""The sans-I/O core: plain objects, no sockets, no asyncio, no clock (time is an argument)."""
