"""Simulated devices, one module per kind, publishing only through the MQTT contract."""
