"""L2/L3, the operational and live twin: devices, telemetry ingest, the time-series store."""
