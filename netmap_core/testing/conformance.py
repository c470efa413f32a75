"""The pipe conformance machine: netmap user operations on a pipe, checked step by step against
:mod:`netmap_core.testing.model` (a Hypothesis rule-based state machine).

Runs on any backend through the public API only (``netmap_core.open``, ``Port``, ``Ring``), so
the same program exercises the emulator and /dev/netmap. See spec/conformance.md.
"""
from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (
    Bundle,
    MultipleResults,
    RuleBasedStateMachine,
    consumes,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

import netmap_core
from netmap_core.errors import ClosedPortError, PortBusyError, RingProtocolError
from netmap_core.ring import Ring

from . import model as M
from .budget import DEFAULT_BUDGETS, THOROUGH_BUDGETS
from .model import MASTER, RX, SLAVE, TX, PipeModel, StrictViolation

__all__ = ["PipeMachine", "make_machine", "run_pipe_conformance", "RunReport", "DEFAULTS", "THOROUGH",
           "INVARIANT_NAMES", "ConformanceFailure", "conformance_settings"]

#: (examples, steps) per rules mode: the CI default and ``--thorough``
DEFAULTS = DEFAULT_BUDGETS["pipe"]
THOROUGH = THOROUGH_BUDGETS["pipe"]

_names = itertools.count()

# --- strategies ------------------------------------------------------------------------------
ROLES = st.sampled_from([MASTER, SLAVE])
KINDS = st.sampled_from([TX, RX])
SLOTS = st.integers(2, 16)  # tiny rings, mostly not powers of two: wrap-around every few packets
EXTRA = st.integers(0, 5)
EXCLUSIVE = st.sampled_from([False, False, False, True])
FLAG_CHOICES = [0, 0, 0, M.NS_MOREFRAG, 0x2, 0x4 | M.NS_MOREFRAG]  # NS_REPORT 0x2, NS_FORWARD 0x4
EVENTS = st.sampled_from([0, M.POLLIN, M.POLLOUT, M.POLLIN | M.POLLOUT])
#: where head/cur are moved: forward/back from the current head (in range), or beyond n-1
POSITIONS = st.one_of(
    st.tuples(st.just("fwd"), st.integers(0, 17)),
    st.tuples(st.just("back"), st.integers(1, 17)),
    st.sampled_from([("n+", 0), ("n+", 1), ("n+", 9), ("abs", 100), ("abs", 0xFFFFFFFF)]),
)
TAILS = st.one_of(st.integers(0, 15), st.sampled_from([16, 100, 2**32 - 1]))
#: values planted in slots to be sanitised by netmap's reinit (B8): index 0/1, an index past
#: every buffer, a length past the buffer size
PLANTS = st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["idx0", "idx1", "idxmax", "len"])),
                  max_size=3)


@dataclass(frozen=True)
class Handle:
    """One open descriptor of a pipe end, as the machine's Bundle carries it."""

    ident: int
    role: str

    def __repr__(self) -> str:
        return f"<{self.role} #{self.ident}>"


@dataclass(frozen=True)
class RunReport:
    """What one run of the machine did: counts, time, and the (shrunk) failure if any."""

    backend: str
    rules: str
    examples: int
    steps: int
    seconds: float
    error: BaseException | None = None
    suite: str = "pipe"

    @property
    def conforms(self) -> bool:
        return self.error is None


class ConformanceFailure(AssertionError):
    """The backend did something the model says netmap does not."""


def _fail(msg: str) -> ConformanceFailure:
    """Build the failure; call sites ``raise`` it so Hypothesis tells distinct checks apart
    (it groups failures by the line that raised)."""
    return ConformanceFailure(msg)


class PipeMachine(RuleBasedStateMachine):
    """Rules are netmap user operations on one pipe (both ends, several descriptors); after
    every step the machine compares everything it can observe with :class:`PipeModel`."""

    backend: str | None = None
    mode: str = M.NETMAP  # the rules mode (netmap_core.open(..., rules=mode))
    examples = 0
    steps = 0

    descriptors = Bundle("descriptors")

    def __init__(self) -> None:
        super().__init__()
        type(self).examples += 1
        self.name = f"cf{os.getpid() % 100000}n{next(_names)}"
        self.model: PipeModel | None = None
        self.ports: dict[int, netmap_core.Port] = {}
        self.ids = itertools.count(1)
        self.tx_ts: dict[int, float] = {}
        self.rx_ts: dict[int, float] = {}

    # --- plumbing ---------------------------------------------------------------------------
    @property
    def m(self) -> PipeModel:
        """The model, which exists from the first successful open on."""
        if self.model is None:
            raise AssertionError("no pipe opened yet: the model does not exist")
        return self.model

    def _count(self) -> None:
        type(self).steps += 1

    def _portname(self, role: str, n: int, exclusive: bool) -> str:
        brace = "{" if role == MASTER else "}"
        return f"netmap:{self.name}{brace}1{'/x' if exclusive else ''}@conf:slots={n}"

    def _ring(self, h: Handle, kind: str) -> Ring:
        return self._ring_of(self.ports[h.ident], kind)

    @staticmethod
    def _ring_of(port: netmap_core.Port, kind: str) -> Ring:
        return (port.tx_rings if kind == TX else port.rx_rings)[0]

    def _observe(self, ring: Ring) -> tuple[tuple[int, int, int], list[list[int]]]:
        s = ring.slots
        slots = [list(x) for x in zip(s["buf_idx"].tolist(), s["len"].tolist(),
                                      s["flags"].tolist(), s["ptr"].tolist())]
        return (ring.head, ring.cur, ring.tail), slots

    def _write_slot(self, ring: Ring, i: int, slot: list[int]) -> None:
        ring.slots["buf_idx"][i] = slot[M.BUF]
        ring.slots["len"][i] = slot[M.LEN]
        ring.slots["flags"][i] = slot[M.FLAGS]
        ring.slots["ptr"][i] = slot[M.PTR]

    def _set_indexes(self, h: Handle, kind: str, head: int | None = None, cur: int | None = None,
                     tail: int | None = None) -> None:
        ring = self._ring(h, kind)
        if head is not None:
            ring.header["head"] = head  # raw: the head/cur setters refuse values >= num_slots
        if cur is not None:
            ring.header["cur"] = cur
        if tail is not None:
            ring.header["tail"] = tail  # only a misbehaving user writes tail (B6/B7)
        self.m.set_indexes(h.role, kind, head, cur, tail)

    def _sync(self, h: Handle, op: str, events: int = 0) -> None:
        """Run one syscall on the backend and the model, compare outcome and revents."""
        port, m = self.ports[h.ident], self.m
        try:
            want = {"txsync": lambda: m.txsync(h.role), "rxsync": lambda: m.rxsync(h.role),
                    "poll": lambda: m.poll(h.role, events)}[op]()
            expected_error = None
        except StrictViolation as exc:
            want, expected_error = None, exc
        try:
            got = port.poll(events, 0) if op == "poll" else getattr(port, op)()
        except RingProtocolError as exc:
            if expected_error is None:
                raise _fail(f"{op}({events:#x}) on {h}: unexpected {exc!r}") from exc
            if (exc.field, exc.value) != (expected_error.field, expected_error.value):
                raise _fail(f"{op} on {h}: RingProtocolError names {exc.field}={exc.value}, "
                            f"the model says {expected_error.field}={expected_error.value}") from exc
            return
        if expected_error is not None:
            raise _fail(f"{op}({events:#x}) on {h}: returned {got!r}, rules=strict requires "
                        f"RingProtocolError for {expected_error}")
        if op == "poll" and got != want:
            raise _fail(f"poll({events:#x}, 0) on {h}: revents {got:#x}, the model says {want:#x} "
                        f"(tx {m.ring(h.role, TX).indexes()}, rx {m.ring(h.role, RX).indexes()})")

    def _read_rx(self, h: Handle, slot: int) -> None:
        """Read one received slot as an application would and check it against the model:
        descriptor fields, payload bytes, and (while sane) that it is the packet the model
        says travels in that slot."""
        m, ring = self.m, self._ring(h, RX)
        mr = m.ring(h.role, RX)
        want = mr.slots[slot]
        got = [int(ring.slots[f][slot]) for f in ("buf_idx", "len", "flags", "ptr")]
        if got != want:
            raise _fail(f"{h} rx slot {slot}: (buf_idx, len, flags, ptr) {got}, the model says {want}")
        buf, ln = got[M.BUF], got[M.LEN]
        if not 2 <= buf < ring.nbufs or ln > ring.buf_size:
            return  # only the quirk paths get here; the slot comparison above already held
        data = ring.payload(slot).tobytes()
        known = m.content.get(buf, b"")[:ln]
        if data[:len(known)] != known:
            raise _fail(f"{h} rx slot {slot} buffer {buf}: payload differs from what was written into it")
        tag = mr.tags[slot]
        if m.sane and tag is not None and mr.held[slot]:
            found = M.parse_payload(data)
            if found != tag:
                raise _fail(f"{h} rx slot {slot}: carries packet {found}, expected {tag} (in order)")
        m.mark_read(h.role, slot)

    # --- opening and closing (F1, F3, F6, F7, A13, A16, B17) -------------------------------
    @initialize(target=descriptors, role=ROLES, slots=SLOTS, extra=EXTRA, both=st.booleans())
    def create_pipe(self, role: str, slots: int, extra: int, both: bool) -> MultipleResults[Handle]:
        first = self._open(role, slots, extra, False)
        assert first is not None  # the pipe's first open cannot find it busy
        if not both:
            return multiple(first)
        other = SLAVE if role == MASTER else MASTER
        second = self._open(other, slots, 0, False)
        assert second is not None
        return multiple(first, second)

    @rule(target=descriptors, role=ROLES, slots=SLOTS, extra=EXTRA, exclusive=EXCLUSIVE)
    def open_end(self, role: str, slots: int, extra: int, exclusive: bool) -> MultipleResults[Handle]:
        self._count()
        if len(self.ports) >= 4 or (self.model and len(self.m.users(role)) >= 2):
            return multiple()
        h = self._open(role, slots, extra, exclusive)
        return multiple() if h is None else multiple(h)

    def _open(self, role: str, slots: int, extra: int, exclusive: bool) -> Handle | None:
        m = self.model
        n = m.n if m else slots  # a hint only counts when the open creates the pipe
        busy = m.open_conflict(role, exclusive) if m else False
        opts = {"extra_bufs": extra} if extra else {}
        text = self._portname(role, n, exclusive)
        try:
            port = netmap_core.open(text, backend=self.backend, rules=self.mode, **opts)
        except PortBusyError:
            if busy:
                return None
            raise
        if busy:
            port.close()
            raise _fail(f"open {text!r} succeeded, but the end is held exclusively or the open asked for "
                        f"exclusive use of a busy end (B17: EBUSY)")
        ident = next(self.ids)
        self.ports[ident] = port
        try:
            h = Handle(ident, role)
            self._check_registration(h, port, n, extra, exclusive)
        except BaseException:
            port.close()
            del self.ports[ident]
            raise
        return h

    def _check_registration(self, h: Handle, port: netmap_core.Port, n: int, extra: int,
                            exclusive: bool) -> None:
        if len(port.tx_rings) != 1 or len(port.rx_rings) != 1:
            raise _fail(f"{h}: expected 1 TX and 1 RX ring, got {len(port.tx_rings)}/{len(port.rx_rings)}")
        tx, rx = port.tx_rings[0], port.rx_rings[0]
        for r in (tx, rx):
            if r.num_slots != n:
                raise _fail(f"{h} {r.name}: num_slots {r.num_slots}, the pipe has {n} (F3)")
        if (port.info.tx_slots, port.info.rx_slots) != (n, n):
            raise _fail(f"{h}: REGISTER reported slots {port.info.tx_slots}/{port.info.rx_slots}, "
                        f"expected {n}")
        if port.info.extra_bufs != extra:
            raise _fail(f"{h}: {port.info.extra_bufs} extra buffers granted, {extra} asked (A13)")
        bufs = port.extra_buffers()
        if len(bufs) != extra or (bufs and port.bufs_head != bufs[0]):
            raise _fail(f"{h}: extra-buffer list {bufs} from ni_bufs_head {port.bufs_head}, expected {extra}")
        if bufs and int(tx.buffers[bufs[-1], :4].view("<u4")[0]) != 0:
            raise _fail(f"{h}: extra-buffer list does not end with index 0 (A13)")
        if self.model is None:
            self._create_model(h, port, n)
        bad = sorted(set(bufs) & self.m.live)
        if bad and self.m.sane:
            raise _fail(f"{h}: extra buffers {bad} are already held by the pipe or another descriptor")
        if any(not 2 <= b < tx.nbufs for b in bufs):
            raise _fail(f"{h}: extra buffer outside [2, {tx.nbufs}): {bufs} (A6)")
        self.m.register(h.ident, h.role, exclusive, bufs)
        self.tx_ts[h.ident] = tx.ts
        self.rx_ts[h.ident] = rx.ts

    def _create_model(self, h: Handle, port: netmap_core.Port, n: int) -> None:
        tx, rx = port.tx_rings[0], port.rx_rings[0]
        (txi, txs), (rxi, rxs) = self._observe(tx), self._observe(rx)
        if txi != (0, 0, n - 1) or rxi != (0, 0, 0):
            raise _fail(f"{h}: fresh pipe rings show h/c/t TX {txi}, RX {rxi}; expected "
                        f"(0, 0, {n - 1}) and (0, 0, 0) (A10, F8)")
        idx = [s[M.BUF] for s in txs + rxs]
        if len(set(idx)) != 2 * n or min(idx) < 2 or max(idx) >= tx.nbufs:
            raise _fail(f"{h}: fresh rings must name {2 * n} distinct buffers in [2, {tx.nbufs}): "
                        f"{idx} (A6, A7)")
        for s in txs + rxs:
            if s[1:] != [tx.buf_size, 0, 0]:
                raise _fail(f"{h}: fresh slot {s}: expected len = buffer size {tx.buf_size}, "
                            f"flags 0, ptr 0 (A7)")
        self.model = PipeModel(n, self.mode, tx.buf_size, h.role, txs, rxs, objtotal=tx.nbufs)

    def _close_safely(self, h: Handle) -> None:
        """Close one descriptor without making netmap free a buffer twice. netmap trusts the
        user: a descriptor's extra-buffer list is freed at its close and the rings' user parts
        when the pipe goes, so after the B8 quirk (or a buffer lost track of) a close can free
        one buffer twice, which the kernel reports ("ouch, double free") and which corrupts
        its allocator. Like a careful application, the machine first drops a list that would
        free anything twice, and before the last close zeroes the slots whose buffers the
        destruction would free again (opening the other end for a moment if nobody holds it);
        the buffers lost that way go with the pipe's private allocator."""
        m = self.model
        port = self.ports[h.ident]
        if m is not None:
            bad_list, bad_slots = m.double_frees(h.ident)
            if bad_list:
                m.drop_list(h.ident)
                port.bufs_head = 0
            if bad_slots:
                self._zero_slots(h, bad_slots)
        del self.ports[h.ident]
        port.close()

    def _zero_slots(self, h: Handle, bad: list[tuple[str, str, int]]) -> None:
        """Set ``buf_idx`` 0 (never freed) in the slots ``bad`` names, (role, kind, slot)."""
        m = self.m
        helper = None
        try:
            for role, kind, i in bad:
                if role == h.role:
                    port = self.ports[h.ident]
                else:
                    if helper is None:  # nobody else holds that end: this is its last user
                        helper = netmap_core.open(self._portname(role, m.n, False),
                                                  backend=self.backend, rules=self.mode)
                    port = helper
                m.ring(role, kind).slots[i][M.BUF] = 0
                self._ring_of(port, kind).slots["buf_idx"][i] = 0
        finally:
            if helper is not None:
                helper.close()

    @rule(h=consumes(descriptors))
    def close_end(self, h: Handle) -> None:
        self._count()
        port = self.ports[h.ident]
        self._close_safely(h)
        try:
            port.txsync()
        except ClosedPortError:
            pass
        else:
            raise _fail(f"txsync on closed {h} did not raise ClosedPortError")
        if self.m.unregister(h.ident):
            self.model = None  # last user gone: the pipe (and its auto-created parent) is destroyed

    # --- TX: fill and publish ---------------------------------------------------------------
    @rule(h=descriptors, k=st.integers(1, 16), size=st.integers(12, 80),
          flags=st.lists(st.sampled_from(FLAG_CHOICES), max_size=16), ptr=st.integers(0, 2**64 - 1))
    def fill(self, h: Handle, k: int, size: int, flags: list[int], ptr: int) -> None:
        """Write k frames (sequence numbers in the payload) from head, then head = cur past them."""
        self._count()
        mr = self.m.ring(h.role, TX)
        k = min(k, mr.user_space())
        if k == 0:
            return
        lengths = [size + (j * 5) % 29 for j in range(k)]
        fl = [flags[j] if j < len(flags) else 0 for j in range(k)]
        ptrs = [(ptr + j) % 2**64 for j in range(k)]
        ring = self._ring(h, TX)
        for i, _buf, frame in self.m.fill(h.role, lengths, fl, ptrs):
            self._write_slot(ring, i, mr.slots[i])
            ring.buf(i)[:len(frame)] = memoryview(frame)  # buf(i) follows the slot's buf_idx
        ring.head = mr.head
        ring.cur = mr.cur

    # --- RX: read and release ---------------------------------------------------------------
    @rule(h=descriptors, k=st.integers(1, 16))
    def release(self, h: Handle, k: int) -> None:
        """Read k received slots from head (checking each), then head = cur past them."""
        self._count()
        mr = self.m.ring(h.role, RX)
        k = min(k, mr.user_space())
        if k == 0:
            return
        for i in mr.user_slots(k):
            self._read_rx(h, i)
        new = (mr.head + k) % mr.n
        self._set_indexes(h, RX, head=new, cur=new)

    @rule(h=descriptors, j=st.integers(0, 15), length=st.integers(0, 2048),
          ptr=st.integers(0, 2**64 - 1))
    def edit_rx(self, h: Handle, j: int, length: int, ptr: int) -> None:
        """Rewrite len and ptr of a received slot (no NS_BUF_CHANGED): the release hands the
        slot back to the sender as the receiver left it (F5)."""
        self._count()
        mr = self.m.ring(h.role, RX)
        space = mr.user_space()
        if space == 0:
            return
        slot = (mr.head + j % space) % mr.n
        self._read_rx(h, slot)
        self.m.edit_rx(h.role, slot, min(length, self.m.buf_size), ptr)
        self._write_slot(self._ring(h, RX), slot, mr.slots[slot])

    @rule(h=descriptors, kind=KINDS, ahead=st.integers(0, 16))
    def set_cur(self, h: Handle, kind: str, ahead: int) -> None:
        """Move cur forward inside [head, tail] (B3/B4: the wake-up point)."""
        self._count()
        mr = self.m.ring(h.role, kind)
        space = mr.user_space()
        if mr.head >= mr.n or mr.tail >= mr.n:
            return
        self._set_indexes(h, kind, cur=(mr.head + min(ahead, space)) % mr.n)

    # --- syncs ------------------------------------------------------------------------------
    @rule(h=descriptors)
    def txsync(self, h: Handle) -> None:
        self._count()
        self._sync(h, "txsync")

    @rule(h=descriptors)
    def rxsync(self, h: Handle) -> None:
        self._count()
        self._sync(h, "rxsync")

    @rule(h=descriptors, events=EVENTS)
    def poll(self, h: Handle, events: int) -> None:
        """poll(events, timeout=0): revents must be exactly what B13 gives."""
        self._count()
        self._sync(h, "poll", events)

    # --- misbehaving users (B6-B8) -----------------------------------------------------------
    def _resolve(self, pos: tuple[str, int], base: int, n: int) -> int:
        kind, v = pos
        if kind == "fwd":
            return (base + v) % n
        if kind == "back":
            return (base - v) % n
        if kind == "n+":
            return n + v
        return v

    def _sync_op(self, h: Handle, kind: str, use_poll: bool, events: int) -> tuple[str, int]:
        """The syscall that reaches a ring of ``kind``; in strict mode a poll whose TX part would
        run before a failing RX check is replaced by rxsync (the order is unspecified)."""
        if not use_poll:
            return ("txsync" if kind == TX else "rxsync"), 0
        if kind == RX:
            events |= M.POLLIN
            if self.mode == M.STRICT and self.m.poll_touches_tx(h.role, events):
                return "rxsync", 0
        return "poll", events

    def _strict_cleanup(self, h: Handle, kind: str, saved: tuple[int, int, int]) -> None:
        """After a strict-mode failure nothing changed; put back legal indexes, as an
        application that caught RingProtocolError would."""
        if self.mode != M.STRICT:
            return
        mr = self.m.ring(h.role, kind)
        if self.m.strict_failure(mr) or mr.tail != mr.rtail:
            self._set_indexes(h, kind, *saved)

    @rule(h=descriptors, kind=KINDS, head_to=POSITIONS, cur_to=POSITIONS, plant=PLANTS,
          use_poll=st.booleans(), events=EVENTS)
    def move_indexes(self, h: Handle, kind: str, head_to: tuple[str, int], cur_to: tuple[str, int],
                     plant: list[tuple[int, str]], use_poll: bool, events: int) -> None:
        """Write arbitrary head/cur (legal or not) and sync: strict raises RingProtocolError and
        changes nothing; netmap reinits (B8): sanitises slots, resets out-of-range indexes,
        adopts in-range inconsistent ones. Slots are planted with bad values only when head is
        beyond n-1, so the reinit is certain, and restored afterwards."""
        self._count()
        m = self.m
        mr = m.ring(h.role, kind)
        saved = mr.indexes()
        n = mr.n
        head = self._resolve(head_to, mr.head if mr.head < n else mr.hwcur, n)
        cur = self._resolve(cur_to, head if head < n else mr.hwcur, n)
        ring = self._ring(h, kind)
        planted: dict[int, list[int]] = {}
        if head >= n:
            for i, what in plant:
                i %= n
                planted.setdefault(i, list(mr.slots[i]))
                s = mr.slots[i]
                if what == "idx0":
                    s[M.BUF] = 0
                elif what == "idx1":
                    s[M.BUF] = 1
                elif what == "idxmax":
                    s[M.BUF] = 0xFFFFFFFF
                else:
                    s[M.LEN] = ring.buf_size + 1 + i
                self._write_slot(ring, i, s)
        self._set_indexes(h, kind, head=head, cur=cur)
        op, ev = self._sync_op(h, kind, use_poll, events)
        self._sync(h, op, ev)
        if planted:
            self._check_rings()  # sanitised (netmap) or untouched (strict) slots, before repair
            for i, orig in planted.items():
                mr.slots[i] = list(orig)
                self._write_slot(ring, i, orig)
        self._strict_cleanup(h, kind, saved)

    @rule(h=descriptors, kind=KINDS, tail=TAILS, use_poll=st.booleans(), events=EVENTS)
    def overwrite_tail(self, h: Handle, kind: str, tail: int, use_poll: bool, events: int) -> None:
        """Write tail (the kernel's field) and sync: the kernel restores it silently (B6/B7)."""
        self._count()
        saved = self.m.ring(h.role, kind).indexes()
        self._set_indexes(h, kind, tail=tail)
        if kind == TX and use_poll:
            events |= M.POLLOUT  # so the TX part certainly runs
        op, ev = self._sync_op(h, kind, use_poll, events)
        self._sync(h, op, ev)
        self._strict_cleanup(h, kind, saved)

    # --- zero copy --------------------------------------------------------------------------
    @rule(h=descriptors, kind=KINDS, j=st.integers(0, 15))
    def swap_extra(self, h: Handle, kind: str, j: int) -> None:
        """Swap the buffer of a user-owned slot with the head of this descriptor's extra-buffer
        list (zero copy), setting NS_BUF_CHANGED; the old buffer is pushed on the list."""
        self._count()
        m = self.m
        mr = m.ring(h.role, kind)
        space = mr.user_space()
        if not m.extra_list(h.ident) or space == 0:
            return
        slot = (mr.head + j % space) % mr.n
        if kind == RX:
            self._read_rx(h, slot)
        port, ring = self.ports[h.ident], self._ring(h, kind)
        x = port.bufs_head
        want = m.descriptors[h.ident].bufs_head
        if x != want:
            raise _fail(f"{h}: ni_bufs_head {x}, the model says {want}")
        nxt = int(ring.buffers[x, :4].view("<u4")[0])
        want = int.from_bytes(m.content[x][:4], "little")
        if nxt != want:
            raise _fail(f"{h}: extra buffer {x} links to {nxt}, the model says {want}")
        new, old, link = m.swap_with_extra(h.ident, kind, slot)
        ring.slots["buf_idx"][slot] = new
        ring.slots["flags"][slot] = mr.slots[slot][M.FLAGS]
        ring.buffers[old, :4] = memoryview(link)
        port.bufs_head = old

    @rule(h=descriptors, k=st.integers(1, 16))
    def forward(self, h: Handle, k: int) -> None:
        """Bounce k received slots into this end's TX ring by swapping buffers (netmap's
        zero-copy bridge): TX takes the buffer, len and MOREFRAG, both get NS_BUF_CHANGED."""
        self._count()
        m = self.m
        rxm, txm = m.ring(h.role, RX), m.ring(h.role, TX)
        k = min(k, rxm.user_space(), txm.user_space())
        if k == 0:
            return
        for i in rxm.user_slots(k):
            self._read_rx(h, i)
        rx, tx = self._ring(h, RX), self._ring(h, TX)
        for a, b in m.forward(h.role, k):
            self._write_slot(rx, a, rxm.slots[a])
            self._write_slot(tx, b, txm.slots[b])
        rx.head, rx.cur = rxm.head, rxm.cur
        tx.head, tx.cur = txm.head, txm.cur

    # --- invariants --------------------------------------------------------------------------
    def _check_rings(self) -> None:
        m = self.m
        for ident, port in self.ports.items():
            d = m.descriptors[ident]
            for kind, rings in ((TX, port.tx_rings), (RX, port.rx_rings)):
                ring, mr = rings[0], m.ring(d.role, kind)
                idx, slots = self._observe(ring)
                if idx != mr.indexes():
                    raise _fail(f"<{d.role} #{ident}> {kind}: head/cur/tail {idx}, the model says "
                                f"{mr.indexes()} (kring hwcur={mr.hwcur} hwtail={mr.hwtail} "
                                f"rhead={mr.rhead} rtail={mr.rtail})")
                if slots != mr.slots:
                    diff = [(i, g, w) for i, (g, w) in enumerate(zip(slots, mr.slots)) if g != w]
                    raise _fail(f"<{d.role} #{ident}> {kind}: slots (index, observed, model) {diff}")

    @invariant()
    def observed_equals_model(self) -> None:
        """head/cur/tail and every slot (buf_idx, len, flags, ptr) of every bound ring, and every
        descriptor's extra-buffer list, equal the model's."""
        if self.model is None:
            return
        self._check_rings()
        for ident, port in self.ports.items():
            head = self.m.descriptors[ident].bufs_head
            if port.bufs_head != head:
                raise _fail(f"descriptor #{ident}: ni_bufs_head {port.bufs_head}, the model says {head}")
            want = self.m.extra_list(ident)
            got = port.extra_buffers()
            if want is not None and got != want:
                raise _fail(f"descriptor #{ident}: extra-buffer list {got}, the model walks {want}")

    @invariant()
    def indexes_in_range(self) -> None:
        """tail is always < n (only the kernel writes it and it validates everything); a ring's
        space never exceeds n-1."""
        for port in self.ports.values():
            for ring in (port.tx_rings[0], port.rx_rings[0]):
                n = ring.num_slots
                if not ring.tail < n:
                    raise _fail(f"{ring.name}: tail {ring.tail} out of range (n={n})")
                if ring.head < n and not 0 <= ring.space() <= n - 1:
                    raise _fail(f"{ring.name}: space {ring.space()} outside 0..{n - 1}")

    @invariant()
    def one_slot_empty(self) -> None:
        """Per direction: sender's free slots + slots in flight <= n-1 (B2, F5, L3); the
        receiver never holds more than is in flight. Observed on both ends when both are open."""
        m = self.model
        if m is None or not m.sane:
            return
        err = m.one_slot_empty_error()
        if err:
            raise _fail(err)
        ends = {m.descriptors[i].role: p for i, p in self.ports.items()}
        if MASTER in ends and SLAVE in ends:
            for a, b in ((MASTER, SLAVE), (SLAVE, MASTER)):
                free, held = ends[a].tx_rings[0].space(), ends[b].rx_rings[0].space()
                if free + held > m.n - 1:
                    raise _fail(f"{a} TX offers {free} free slots while {b} RX holds {held}: "
                                f"more than n-1={m.n - 1}")

    @invariant()
    def buffers_conserved(self) -> None:
        """Every live buffer (the pipe's 2n plus open descriptors' extra buffers) is held exactly
        once: by the authoritative slot of its slot pair (F6) or by one extra-buffer list."""
        m = self.model
        if m is None or not m.sane:
            return
        err = m.conservation_error()
        if err:
            raise _fail(err)

    @invariant()
    def delivered_in_order(self) -> None:
        """In each direction the slots released by the receiver are, in order, a prefix of the
        slots handed over by the sender, and the sender's packets went out in sequence order."""
        m = self.model
        if m is None or not m.sane:
            return
        err = m.order_error()
        if err:
            raise _fail(err)

    @invariant()
    def timestamps(self) -> None:
        """B16: RX syncs set ring->ts (and it never goes back); TX ts is never written."""
        m = self.model
        if m is None:
            return
        for ident, port in self.ports.items():
            role = m.descriptors[ident].role
            tx, rx = port.tx_rings[0], port.rx_rings[0]
            if tx.ts != self.tx_ts[ident]:
                raise _fail(f"{tx.name}: TX ts changed from {self.tx_ts[ident]} to {tx.ts} "
                            f"(B16: never on TX)")
            if m.ring(role, RX).rx_synced and rx.ts <= 0:
                raise _fail(f"{rx.name}: ts still {rx.ts} after an RX sync (B16)")
            if rx.ts < self.rx_ts[ident]:
                raise _fail(f"{rx.name}: ts went back from {self.rx_ts[ident]} to {rx.ts}")
            self.rx_ts[ident] = rx.ts

    def teardown(self) -> None:
        roles = {i: d.role for i, d in self.m.descriptors.items()} if self.model else {}
        for ident in list(self.ports):
            if ident in roles:
                try:
                    self._close_safely(Handle(ident, roles[ident]))
                    self.m.unregister(ident)
                    continue
                except Exception:  # noqa: BLE001 - a failed example's state: close regardless
                    pass
            port = self.ports.pop(ident, None)
            if port is not None:
                port.close()


#: the machine's invariant methods, in the order they are declared
INVARIANT_NAMES = ("observed_equals_model", "indexes_in_range", "one_slot_empty", "buffers_conserved",
                   "delivered_in_order", "timestamps")


def make_machine(backend: str | None, rules: str) -> type[PipeMachine]:
    """A PipeMachine bound to one backend and one rules mode (``"netmap"`` or ``"strict"``)."""
    if rules not in (M.NETMAP, M.STRICT):
        raise ValueError(f"rules={rules!r}: allowed 'netmap', 'strict'")
    name = f"PipeMachine_{backend or 'default'}_{rules}"
    return type(name, (PipeMachine,), {"backend": backend, "mode": rules, "examples": 0, "steps": 0})


def conformance_settings(examples: int, steps: int, **extra: Any) -> settings:
    return settings(
        max_examples=examples, stateful_step_count=steps, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                               HealthCheck.data_too_large],
        **extra,
    )


def run_pipe_conformance(backend: str | None, rules: str, examples: int, steps: int,
                         **extra: Any) -> RunReport:
    """Run the machine; returns counts and the (shrunk) failure, if any, instead of raising."""
    machine = make_machine(backend, rules)
    t0 = time.perf_counter()
    error = None
    try:
        run_state_machine_as_test(machine, settings=conformance_settings(examples, steps, **extra))
    except BaseException as exc:  # noqa: BLE001 - reported to the caller with the shrunk program
        if isinstance(exc, KeyboardInterrupt):
            raise
        error = exc
    return RunReport(backend or netmap_core.default_backend_name(), rules, machine.examples,
                     machine.steps, time.perf_counter() - t0, error)
