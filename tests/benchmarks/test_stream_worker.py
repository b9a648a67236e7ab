"""The streaming benchmark's garbage-collector diagnostics (``stream_worker.GcPauses``)."""

from __future__ import annotations

import gc

from tunnelproof.benchmarks.stream_worker import GcPauses


def test_gc_pauses_records_each_collection_and_its_generation() -> None:
    pauses = GcPauses()
    gc.callbacks.append(pauses)
    try:
        gc.collect(0)
        gc.collect()  # a full collection
    finally:
        gc.callbacks.remove(pauses)
    summary = pauses.summary(histogram=True)
    assert summary["gc_collections"] >= 2
    assert summary["gc_full_collections"] >= 1
    assert [g for g, _ in pauses.pauses][-1] == 2
    assert 0 < summary["gc_max_pause_ms"] <= summary["gc_total_ms"]
    assert summary["gc_tracked_objects"] > 1000
    top = summary["gc_top_types"]
    assert len(top) == 12 and "function" in top and "dict" in top
    assert "gc_top_types" not in pauses.summary()
