"""``netboot doctor``: why a machine will not boot, and how to fix it.

``gather`` reads the machine (sockets, /proc, configfs, profiles, state) into
plain ``Facts``; ``diagnose`` turns facts into ``Finding``s with no I/O, so
every rule is tested on hand-made facts.
"""

from .checks import Finding, diagnose, render_text
from .facts import Facts, HostFacts, LioFacts, PortFacts
from .gather import gather

__all__ = ["Facts", "Finding", "HostFacts", "LioFacts", "PortFacts", "diagnose", "gather", "render_text"]
