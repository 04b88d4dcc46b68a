"""What does not work right now in a running daemon: one model, one monitor, one file.

``model`` is the pure value and its views (STATUS=, ``status`` text/JSON,
metrics); ``monitor.Health`` is the daemon's thread-safe live copy;
``publish`` writes and reads it as ``health.json`` in the state directory.
"""

from .model import (DEGRADED, WITHHELD, HealthReport, Problem, metric_samples, status_line, text_lines,
                    to_json)
from .monitor import Health
from .publish import (CONFIG_COMPONENT, HEALTH_FILE, daemon_serving, read_health_file, read_published,
                      remove_health_file, write_health_file)

__all__ = ["CONFIG_COMPONENT", "DEGRADED", "HEALTH_FILE", "WITHHELD", "Health", "HealthReport", "Problem",
           "daemon_serving", "metric_samples", "read_health_file", "read_published", "remove_health_file",
           "status_line", "text_lines", "to_json", "write_health_file"]
