"""Notifications: alarms detected from the public files, sent to webhook, ntfy and MQTT targets."""
