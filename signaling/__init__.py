"""The aiohttp signalling server: REST ``/api/v1``, WebSocket ``/ws``, static pages."""
