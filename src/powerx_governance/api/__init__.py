"""The HTTP service: FastAPI app, problem details, auth dependencies."""
