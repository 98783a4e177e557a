"""Hardware clients: the chip model in a worker process, hxtorch on a real system, replay."""
