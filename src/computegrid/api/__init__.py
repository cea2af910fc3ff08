"""HTTP edge: thin FastAPI routes over services. See README.md."""
