"""The edge and composition root: aiohttp app, Socket.IO namespaces, REST, config."""
