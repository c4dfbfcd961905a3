"""L2/L3, the operational and live twin: telemetry ingest, sync policies, live device state over MQTT.

The device registry they serve is in `thread/devices.py`; the time-series store in `store/`."""
