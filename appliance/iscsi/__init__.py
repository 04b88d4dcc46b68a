"""iSCSI root LUNs on kernel LIO (README: iSCSI root LUNs): desired → observed → plan → apply.

- ``desired``: frozen desired state from a ``Config`` (secrets hidden in ``Secret``);
- ``observe``: LIO read once into frozen data; ``sessions``: who is logged in;
- ``plan``: the pure planner (ownership, drift, refusals of destructive changes);
- ``lio``: the edge — kernel preparation, one ``RTSRoot``, action execution;
- ``api``: what the daemon and the application layer (``appliance.app``) call.
"""

from .api import ApplyReport, format_plan, iscsi_apply, iscsi_plan, iscsi_status
from .desired import LioDesired, Secret, desired_state, read_secret_file
from .lio import LioAdapter, ensure_backing_file, prepare_kernel
from .observe import LioObserved, SessionObserved, observe
from .plan import Action, Plan, Refusal, plan
from .sessions import read_session_list, read_sessions

__all__ = [
    "Action",
    "ApplyReport",
    "LioAdapter",
    "LioDesired",
    "LioObserved",
    "Plan",
    "Refusal",
    "Secret",
    "SessionObserved",
    "desired_state",
    "ensure_backing_file",
    "format_plan",
    "iscsi_apply",
    "iscsi_plan",
    "iscsi_status",
    "observe",
    "plan",
    "prepare_kernel",
    "read_secret_file",
    "read_session_list",
    "read_sessions",
]
