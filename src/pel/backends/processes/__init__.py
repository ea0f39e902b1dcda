"""The processes backend: one worker process per core, pipes, pickle protocol 5.

Data flow (one box per class; the parent side runs on the runtime thread)::

    runtime ─ Dispatch ─▶ ProcessesBackend.send ─▶ _WorkerHandle.outbox
                              (batch of calls, functions a worker lacks)
                                          │ non-blocking writes, selector
                                          ▼
                          pipe ──▶ worker.main: read frames, queue calls,
                                   run each, batch the results
                                          │ blocking writes
                                          ▼
    runtime ◀─ Completed ─ ProcessesBackend.wait ◀── pipe (results)
               Exited    ◀─ process sentinel readable (the worker died)

The parent never blocks on a pipe: it writes what fits and keeps the rest,
and always drains results, so neither side can wait on the other forever.
"""
