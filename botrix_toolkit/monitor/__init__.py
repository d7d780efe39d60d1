"""``botrix monitor``: keep every event of a queue on disk, as a Parquet dataset any engine reads.

Layer ``monitor`` (beside ``sim``; imports core, server and frames only).

- ``service.MonitorService``: one ``EventRecorder`` per queue, drained every
  ``flush_s`` seconds into the history folder; ``stop()`` flushes everything.
- ``event_tables``: raw messages -> Arrow tables, vectorised.
- ``dataset_writer.DatasetWriter``: files appear atomically (written aside, renamed).
- ``maintenance``: compaction (atomic folder exchange) and retention.
- ``backfill.write_recording``: a saved recording into a history folder.
- ``metrics.MonitorMetrics``: Prometheus metrics (``start_metrics`` for the service);
  ``job_tracker`` counts event chunks exactly as ``analysis.throughput``
  (``followed_jobs`` keeps its jobs between chunks);
  ``exposition`` builds what a scrape shows.

The layout and schemas are in ``frames.dataset_layout``, the per-minute rollups in
``frames.rollups.RollupBuilder`` (the dashboard's live minutes use it too); reading is in
``frames.history_dataset`` (``open_dataset``, ``load_history``, ``read_rollups``).

Hooks for other components (the Prometheus metrics): ``MonitorService.observers``,
callables ``(prefix, events_frame)`` run after every drain,
``MonitorService.queue_health(prefix)`` (events_received, events_written, gaps,
malformed, dropped, flush_lag_s, last_event_age_s, open_jobs: one queue's) and
``MonitorService.health()`` (their totals). ``botrix monitor --metrics-port N`` calls
``botrix_toolkit.monitor.metrics.start_metrics(service, host, port) -> url``.
"""
