"""Apps for the edge end-to-end tests: upstreams that are not edgecorn (run by Uvicorn and
the `websockets` server) and the `demo`/`legacy` modules the issue's example file names."""
