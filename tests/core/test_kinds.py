"""The one table of event kinds (proctop.model.kinds) and the kernel's numbers agree.

The kernel layer cannot import the model, so ``proctop.kernel.protocol`` keeps
its own ``MASK_BITS`` for parsing ``--only``; these tests hold the two equal,
so a kind added to one and not the other fails here, not on a user's screen.
"""

from __future__ import annotations

from proctop.kernel import protocol
from proctop.model import kinds
from proctop.model.kinds import KINDS


def test_mask_bits_agree_with_the_kernel_protocol():
    assert kinds.MASK_BITS == protocol.MASK_BITS
    assert set(kinds.MASK_BITS) | {"all"} == set(protocol.MASK_NAMES)
    assert kinds.PROC_EVENT_ALL == protocol.PROC_EVENT_ALL


def test_every_kernel_event_type_has_a_kind():
    """Every PROC_EVENT_* the kernel sends as an event (all but NONE and the mask-only
    NONZERO_EXIT) names a kind whose bit is that number."""
    not_sent = ("PROC_EVENT_NONE", "PROC_EVENT_ALL", "PROC_EVENT_NONZERO_EXIT")
    sent = {value for name, value in vars(protocol).items() if name.startswith("PROC_EVENT_") and name not in not_sent}
    assert set(kinds.EVENT_NAMES) == sent
    for what, name in kinds.EVENT_NAMES.items():
        assert kinds.BY_NAME[name].bit == what


def test_table_is_consistent():
    names = [kind.name for kind in KINDS]
    assert len(names) == len(set(names))
    keys = [kind.key for kind in KINDS if kind.key is not None]
    assert len(keys) == len(set(keys))
    colours = [colour.name for colour in kinds.COLOURS]
    assert len(colours) == len(set(colours))
    for kind in KINDS:
        # a toggle needs a bit to toggle; an event kind has its own colour class, named after it
        assert kind.key is None or kind.bit
        if kind.event:
            assert kind.colours and kind.colours[0].name == kind.name
    assert set(kinds.EVENT_KINDS) == {kind.name for kind in KINDS if kind.event}
    assert "nonzero-exit" not in kinds.EVENT_KINDS  # filtered exits arrive as "exit"


def test_event_kinds_keep_the_kernel_order():
    """The JSON/metrics order: the kernel's numbers ascending, proctop's own ``lost`` last."""
    assert kinds.EVENT_KINDS == ("fork", "exec", "uid", "gid", "sid", "ptrace", "comm", "coredump", "exit", "lost")
