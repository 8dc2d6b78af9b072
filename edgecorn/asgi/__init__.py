"""The ASGI side: app loading (dispatch), lifespan, the WSGI adapter."""
