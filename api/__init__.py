"""The interfaces: FastAPI app factory, dependencies, routers and the CLI."""
