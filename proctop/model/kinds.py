"""The event kinds and mask bits as the UI speaks of them.

The model is the UI's vocabulary: the UI imports ``proctop.model`` and
never ``proctop.kernel`` (tests/test_layers.py holds that), so the few kernel
names the UI needs to toggle the subscription mask are re-exported here,
not redefined: the kernel protocol stays their one definition.
"""

from __future__ import annotations

from proctop.kernel.protocol import MASK_BITS as MASK_BITS
from proctop.kernel.protocol import PROC_EVENT_ALL as PROC_EVENT_ALL
