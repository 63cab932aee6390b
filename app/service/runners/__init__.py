"""What runs jobs: the protocol the routes use, and the runner that ships (a worker thread in-process)."""
