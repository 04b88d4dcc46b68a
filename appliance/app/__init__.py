"""The application layer: every operator operation as data (``Report``),
rendered as a table or JSON by one renderer for the CLI and the shell."""

from .application import App, check, doctor
from .report import Report, Table, emit, render_json, render_text, table, when

__all__ = ["App", "Report", "Table", "check", "doctor", "emit", "render_json", "render_text", "table", "when"]
