"""Keep the cyclic collector's pauses off the server's clock.

CPython's full (generation 2) collection walks every tracked object while
the event loop waits. Measured on the 2-core bench machine: 69 ms for the
81,000 objects the server holds once its modules are imported, and
200-370 ms under load with 2,000 sockets, far more than the tens of
milliseconds `live` and `ended` may be late. What exists when start-up ends
(modules, classes, tables, the question bank) lives as long as the process,
so it is moved out of the collector's sight with ``gc.freeze()``; a full
collection then walks only what came after.
"""

from __future__ import annotations

import gc


def freeze_startup_heap() -> int:
    """Collect once, then freeze what survived; returns the objects frozen.

    Only for a server process: frozen objects are never collected, so
    cycles among them that later become garbage are never freed. Start-up
    objects do not become garbage; tests that build many apps in one
    process leave this off.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
