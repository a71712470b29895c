"""tests/matrix checks the kernel VM itself (scripts/vm/run.sh): they run only inside
one, where run.sh sets VM_KERNEL. Outside a VM they are not collected (a plain
`pytest tests` on the host has nothing to check here)."""

from __future__ import annotations

import os

collect_ignore_glob = [] if os.environ.get("VM_KERNEL") else ["test_*.py"]
