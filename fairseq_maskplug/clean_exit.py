"""A clean interpreter exit after fairseq training.

fairseq 0.12 prefetches batches in a daemon thread (``data.iterators.
BackgroundConsumer``, ``--data-buffer-size`` batches ahead, 10 by default)
that is still collating the next batches when training ends. If the
interpreter finalises while that thread is inside a torch operation (which
releases the GIL), the thread is torn down as it takes the GIL back: Python
ends it with ``pthread_exit``, whose forced unwinding through torch's C++
frames calls ``std::terminate``, and the process dies with "terminate called
without an active exception" (SIGABRT, exit 134) after a finished run.

:func:`stop_background_consumers`, registered with ``atexit`` when the plugin
loads (so before finalisation, with the interpreter whole), lets each such
thread finish the batch in hand and end: it asks it to stop after its next
put, empties its queue so that the put and the end-of-data marker fit, and
joins it.
"""

import atexit
import queue
import threading


def stop_background_consumers(timeout: float = 60.0) -> int:
    """Stop fairseq's live batch-prefetching threads; returns how many were stopped."""
    from fairseq.data.iterators import BackgroundConsumer

    consumers = [t for t in threading.enumerate() if isinstance(t, BackgroundConsumer) and t.is_alive()]
    for consumer in consumers:
        consumer._max_len = 0  # its loop breaks after the put in progress (count >= max_len)
        try:
            while True:
                consumer._queue.get_nowait()
        except queue.Empty:
            pass
    for consumer in consumers:
        consumer.join(timeout)
    return len(consumers)


def register():
    atexit.register(stop_background_consumers)
