"""Moving calls and results between processes: pickling, and later shared memory."""
